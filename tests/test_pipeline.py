"""The DVC pipeline end to end on a tiny profile: outputs, caching, experiments, remote round trip.

One temporary git + DVC repository holds a copy of the project with a tiny params.yaml;
the tests run in order on it (module-scoped), as a user would: repro, repro again,
change a predict key, change train.lr, push to a local remote, pull into a fresh clone.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TINY, write_params

pytestmark = pytest.mark.slow

PIPELINE_TINY = {**TINY, "sample.n_train": 10, "sample.n_val": 4, "sample.n_dark": 4,
                 "train.max_iter": 2, "train.clean_warmup_iters": 1, "train.checkpoint_every": 1, "train.image_every": 1,
                 "train_decomp.iterations": 2}
STAGES = {"check", "sample", "prepare", "convert_weights", "train_decomp", "train", "predict@wider", "predict@dark",
          "evaluate_wider", "evaluate_dark", "visualize"}


def env() -> dict:
    e = dict(os.environ)
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"  # stages run `python`
    e.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t",
             DVC_NO_ANALYTICS="1")
    return e


def sh(cwd: Path, *cmd: str, stdout_only: bool = False) -> str:
    r = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True)
    if r.returncode:
        raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r.stdout if stdout_only else r.stdout + r.stderr


def dvc(cwd: Path, *args: str, stdout_only: bool = False) -> str:
    return sh(cwd, sys.executable, "-m", "dvc", *args, stdout_only=stdout_only)


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def shown_revs(shown) -> list[dict]:
    """Each revision of `dvc exp show --json` (the workspace, the baseline commit, each
    experiment): its rev, whether it is an experiment, its params.yaml and its metrics."""
    out = []

    def walk(node, in_experiments: bool):
        if isinstance(node, list):
            for x in node:
                walk(x, in_experiments)
        elif isinstance(node, dict):
            data = node.get("data")
            if isinstance(data, dict) and "params" in data:
                out.append({"rev": node.get("rev"), "experiment": in_experiments,
                            "params": data["params"]["params.yaml"]["data"], "metrics": data.get("metrics", {})})
            for k, v in node.items():
                walk(v, in_experiments or k == "experiments")
    walk(shown, False)
    return out


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A git + DVC copy of the project (tracked files only) with the tiny profile."""
    d = tmp_path_factory.mktemp("pipeline") / "repo"
    d.mkdir()
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if rel.startswith(("tests/", "bench/")) or rel == "dvc.lock" or rel.startswith("metrics/"):
            continue
        src = ROOT / rel
        if src.is_file():
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, d / rel)
    write_params(d / "params.yaml", PIPELINE_TINY, base=ROOT / "params.yaml")
    sh(d, "git", "init", "-q")
    sh(d, "git", "add", "-A")
    sh(d, "git", "commit", "-qm", "tiny")
    return d


@pytest.fixture(scope="module")
def first_repro(repo) -> str:
    return dvc(repo, "repro")


def test_repro_runs_every_stage_and_writes_the_metrics(repo, first_repro):
    assert ran(first_repro) == STAGES
    wider = json.loads((repo / "metrics" / "eval_wider.json").read_text())
    assert list(wider) == ["easy", "medium", "hard"] + [f"{s}_ci_{b}" for s in ("easy", "medium", "hard")
                                                       for b in ("low", "high")] + ["missing_predictions"]
    assert all(0.0 <= wider[f"{k}_ci_low"] <= wider[k] <= wider[f"{k}_ci_high"] <= 1.0
               for k in ("easy", "medium", "hard"))
    dark = json.loads((repo / "metrics" / "eval_dark.json").read_text())
    assert 0.0 <= dark["ap_ci_low"] <= dark["ap"] <= dark["ap_ci_high"] <= 1.0
    # every evaluated image was predicted (those without faces too): nothing scored by omission
    assert wider["missing_predictions"] == 0 and dark["missing_predictions"] == 0
    train = json.loads((repo / "metrics" / "train.json").read_text())
    assert train["iterations"] == 2
    for p in ("plots/train/loss.csv", "plots/pr/pr_wider_hard.csv", "plots/pr/pr_darkface.csv",
              "plots/decomp/preview.png", "data/weights/model.ckpt"):
        assert (repo / p).exists(), p
    assert len(list((repo / "runs" / "train").glob("*/last.ckpt"))) == 1  # one run folder per fingerprint
    assert list((repo / "plots" / "visualize").glob("detections_dark_*.png"))


def test_second_repro_runs_nothing(repo, first_repro):
    out = dvc(repo, "repro")
    assert ran(out) == set()
    assert "up to date" in out


def test_plots_show_writes_one_html_page(repo, first_repro):
    out = dvc(repo, "plots", "show", "-o", "dvc_plots")
    page = repo / "dvc_plots" / "index.html"
    assert page.exists(), out
    html = page.read_text()
    for needle in ("loss.csv", "pr_wider_easy.csv", "preview.png"):
        assert needle in html, needle


def test_predict_change_reruns_no_training(repo, first_repro):
    out = dvc(repo, "exp", "run", "-S", "predict.conf_thresh=0.1")
    assert {"predict@wider", "predict@dark", "visualize"} <= ran(out)
    assert not ran(out) & {"sample", "prepare", "convert_weights", "train_decomp", "train"}
    # the experiment is listed with its own param and metrics
    shown = json.loads(dvc(repo, "exp", "show", "--json", stdout_only=True))
    wider = json.loads((repo / "metrics" / "eval_wider.json").read_text())
    exps = [e for e in shown_revs(shown) if e["experiment"]]
    assert [e["params"]["predict"]["conf_thresh"] for e in exps] == [0.1]
    assert exps[0]["metrics"]["metrics/eval_wider.json"]["data"] == wider
    baseline = [e for e in shown_revs(shown) if not e["experiment"] and e["rev"] != "workspace"]
    committed = yaml.safe_load(sh(repo, "git", "show", "HEAD:params.yaml", stdout_only=True))["predict"]["conf_thresh"]
    assert [e["params"]["predict"]["conf_thresh"] for e in baseline] == [committed] != [0.1]
    # `dvc metrics diff` against HEAD (which has no metrics): every AP new, as the workspace has it
    diff = json.loads(dvc(repo, "metrics", "diff", "--json", stdout_only=True))
    got = diff["metrics/eval_wider.json"]
    assert {k: (v["old"], v["new"]) for k, v in got.items()} == {k: (None, wider[k]) for k in wider}


def test_train_lr_change_reruns_train_onwards(repo, first_repro):
    dvc(repo, "exp", "run", "-S", "predict.conf_thresh=0.05")  # back to the committed value
    out = dvc(repo, "exp", "run", "-S", "train.lr=0.002")
    assert "train" in ran(out)
    assert not ran(out) & {"sample", "prepare", "convert_weights", "train_decomp"}
    assert "starting over" in out  # the persisted checkpoint of another lr is not resumed


def test_remote_round_trip_restores_every_output(repo, first_repro, tmp_path):
    dvc(repo, "exp", "run", "-S", "train.lr=0.001")  # the committed params again
    storage = tmp_path / "storage"
    dvc(repo, "remote", "add", "-d", "local", str(storage))
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "results")
    dvc(repo, "push")
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    dvc(clone, "pull")
    for p in ("data/weights/model.ckpt", "data/predictions/wider_val",
              "data/predictions/dark", "data/lists/train.txt", "data/sample"):
        assert (clone / p).exists(), p
    assert not (clone / "runs").exists()   # resumable state stays on the machine that trained
    status = dvc(clone, "status")
    assert "up to date" in status, status
    assert ran(dvc(clone, "repro")) == set()


def test_dvc_checkout_and_exp_apply_keep_every_run_folder(repo, first_repro):
    """An interrupted run's folder, present only in the workspace, used to be deleted by both
    commands (the state was a DVC output, data/train)."""
    runs = repo / "runs" / "train"
    interrupted = runs / "0123456789abcdef" / "last.ckpt"
    interrupted.parent.mkdir(parents=True)
    interrupted.write_bytes(b"the state of an interrupted run")
    before = sorted(p.relative_to(runs) for p in runs.rglob("*"))
    dvc(repo, "checkout", "--force")
    dvc(repo, "exp", "run", "-S", "predict.conf_thresh=0.2")   # an experiment of the current commit
    names = dvc(repo, "exp", "list", "--name-only", stdout_only=True).split()
    assert len(names) == 1, names
    dvc(repo, "exp", "apply", names[0])
    assert sorted(p.relative_to(runs) for p in runs.rglob("*")) == before
    assert interrupted.read_bytes() == b"the state of an interrupted run"
    # last in this file: the workspace is the applied experiment's now
