"""Shared fixtures: tiny params profiles, a tiny generated data set, stage entry points."""
from __future__ import annotations

import importlib.util
import signal
from pathlib import Path

import pytest

from dainet.params import write_overrides

ROOT = Path(__file__).resolve().parents[1]

# The tiny profile: a few iterations of a narrow network on 128 px crops, so every
# stage runs end to end in seconds on a CPU.
TINY = {
    "sample.n_train": 12, "sample.n_val": 6, "sample.n_dark": 6, "sample.n_events": 2,
    "sample.image_side": [128, 192], "sample.face_size": [16, 72], "sample.faces_per_image": [1, 3],
    "model.width": 0.125,
    "augment.image_size": 128,
    "train_decomp.iterations": 3, "train_decomp.batch_size": 2, "train_decomp.image_size": 48,
    "train_decomp.log_every": 1, "train_decomp.n_preview": 2, "train_decomp.preview_size": 64,
    "train.batch_size": 2, "train.max_iter": 4, "train.max_epochs": 100, "train.log_every": 1,
    "train.image_every": 2, "train.checkpoint_every": 2, "train.device": "cpu",
    "train.clean_warmup_iters": 2,  # both phases: clean detection, then the joint objective
    "predict.single_scale": True, "visualize.n_images": 2,
}


def write_params(path: Path, overrides: dict | None = None, base: Path = ROOT / "params.yaml") -> Path:
    """params.yaml with dotted-key overrides (every key must exist in the base)."""
    return write_overrides(path, overrides, base)


def stage_main(name: str):
    """The ``main(argv)`` of ``stages/<name>.py`` (stages are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"stage_{name}", ROOT / "stages" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


@pytest.fixture(scope="session", autouse=True)
def python_signal_handlers():
    """Jittor, once loaded, ends the whole process (status 1, no report) on SIGINT and when a
    child process dies by a signal other than SIGTERM: a subprocess killed on a test's timeout
    would end the test session silently. The test process keeps Python's handlers."""
    import dainet.jt  # noqa: F401  (configures Jittor before it loads)
    import jittor  # noqa: F401
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def tiny_params(tmp_path_factory) -> Path:
    return write_params(tmp_path_factory.mktemp("params") / "params.yaml", TINY)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, tiny_params) -> dict:
    """A tiny sample release and its lists: {'root', 'lists', 'params', 'wider', 'darkface'}."""
    from dainet.data.prepare import prepare_lists
    from dainet.data.sample import SampleConfig, write_sample
    from dainet.data.synth import SceneConfig
    from dainet.params import load_params

    root = tmp_path_factory.mktemp("tiny_data")
    sample = load_params(tiny_params).section("sample")
    cfg = sample.load(SampleConfig, scene=sample.load(SceneConfig))
    write_sample(root / "sample", cfg)
    prepare_lists(root / "sample" / "widerface", root / "sample" / "darkface", root / "lists")
    return {"root": root, "lists": root / "lists", "params": tiny_params,
            "wider": root / "sample" / "widerface", "darkface": root / "sample" / "darkface"}


@pytest.fixture(scope="session")
def weights(tmp_path_factory, tiny_data):
    """Seeded initial DAI-Net weights and a decomposition net (as convert_weights writes them)."""
    import dainet.jt  # noqa: F401  (configures Jittor before it loads)
    from dainet.models import build_model
    from dainet.models.decomp import build_decomposer
    from dainet.models.init import init_weights
    from dainet.params import load_params
    from dainet.weights.checkpoint import save_checkpoint

    d = tmp_path_factory.mktemp("weights")
    model = load_params(tiny_data["params"]).section("model")
    save_checkpoint(d / "init.ckpt", {"model": init_weights(build_model(model), 0, "kaiming").state_dict()})
    save_checkpoint(d / "decomp.ckpt", {"model": init_weights(build_decomposer(model), 0).state_dict()})
    return d
