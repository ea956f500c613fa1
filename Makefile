# The two set-up commands (see README): `make repro` and `make test`.
# Both create .venv when missing and install the project once; the stamp file
# makes re-runs skip the install unless pyproject.toml changed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.dainet-installed
# stage commands say `python`: the venv's, so dvc runs them with the project installed
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup repro test test-fast doctor bench

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@# oneDNN (fast CPU convolutions) and OpenMPI (multi-GPU) from Debian, when root
	$(PY) -m dainet doctor --install --no-jittor
	@touch $(STAMP)

setup: $(STAMP)

repro: setup
	dvc repro

test: setup
	$(VENV)/bin/python -m pytest -q

# the edit-test loop: everything but the tests marked slow (pipelines, training loops, MPI,
# the paper-width parity); `make test` (CI) runs them all
test-fast: setup
	$(VENV)/bin/python -m pytest -q -m "not slow"

doctor: setup
	$(PY) -m dainet doctor

bench: setup
	$(PY) bench/train_step.py
	$(PY) bench/eval_wider.py
