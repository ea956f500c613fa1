"""Training state that survives what users do: signals, corrupt or stale files, changed
intervals, a raised max_iter, a diverging step; logs that append; strict metrics JSON.

The fast tests use no training; those marked slow run the train stage on the tiny profile.
"""
from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, TINY, stage_main, write_params
from helpers import SELF_SIGNAL, read_rows, run_dir, train_args

slow = pytest.mark.slow


# -- no training ---------------------------------------------------------------------------

def test_checkpoint_bytes_do_not_depend_on_the_clock(tmp_path, monkeypatch):
    from dainet.weights.checkpoint import save_checkpoint
    state = {"model": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, "loop": {"iteration": 3},
             "n": np.int64(7), "opt": {0: [np.ones(2)]}}
    save_checkpoint(tmp_path / "a.ckpt", state)
    time.sleep(2.1)                            # zip timestamps have a 2 s resolution
    save_checkpoint(tmp_path / "b.ckpt", state)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 400 * 86400)   # a year later
    save_checkpoint(tmp_path / "c.ckpt", state)
    a = (tmp_path / "a.ckpt").read_bytes()
    assert a == (tmp_path / "b.ckpt").read_bytes() == (tmp_path / "c.ckpt").read_bytes()


def test_metrics_json_is_strict(tmp_path):
    from dainet.utils.fileio import write_json
    write_json(tmp_path / "m.json", {"best_val_loss": math.inf, "curve": [math.nan, 1.5, (-math.inf, 2)],
                                     "nested": {"a": 0.25}, "n": 3})
    text = (tmp_path / "m.json").read_text()

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant} in {text}")
    assert json.loads(text, parse_constant=refuse) == {
        "best_val_loss": None, "curve": [None, 1.5, [None, 2]], "nested": {"a": 0.25}, "n": 3}


def test_stale_temp_files_of_our_writer_are_removed_and_nothing_else(tmp_path):
    from dainet.utils.fileio import remove_stale_temps
    run = tmp_path / "train" / "0123456789abcdef"
    run.mkdir(parents=True)
    # a writer killed inside atomic_path leaves its temp file (what DVC would then cache)
    code = ("import os, sys; from dainet.utils.fileio import atomic_path\n"
            "with atomic_path(sys.argv[1]) as t:\n    t.write_text('half'); os._exit(9)")
    assert subprocess.run([sys.executable, "-c", code, str(run / "last.ckpt")], cwd=ROOT).returncode == 9
    left = list(run.iterdir())
    assert len(left) == 1 and left[0].name.startswith(".last.ckpt.")
    theirs = [tmp_path / "train" / "notes.tmp", tmp_path / "train" / ".hidden.tmp", run / "iter_0000002.ckpt"]
    for p in theirs:
        p.write_text("keep")
    assert remove_stale_temps(tmp_path / "train") == left
    assert not left[0].exists() and all(p.exists() for p in theirs)


def test_resume_key_ignores_intervals_device_workers_and_the_total_unless_the_schedule_reads_it():
    from dainet.training.runstate import path_params
    base = yaml.safe_load((ROOT / "params.yaml").read_text())["train"]
    step = {**base, "lr_schedule": "step"}
    key = path_params(step, 600)
    for change in ({"log_every": 7}, {"image_every": 0}, {"checkpoint_every": 3}, {"num_workers": 4},
                   {"device": "cuda"}, {"max_iter": 10 ** 6}, {"max_epochs": 3}, {"lr_final_fraction": 0.5}):
        assert path_params({**step, **change}, 1200) == key, change
    for change in ({"lr": 2e-3}, {"seed": 1}, {"lr_steps": [5]}, {"warmup_iters": 3}, {"clean_warmup_iters": 1}):
        assert path_params({**step, **change}, 600) != key, change
    cosine = {**base, "lr_schedule": "cosine"}
    assert path_params(cosine, 600) != path_params(cosine, 1200)    # the lr of every iteration moves
    assert path_params({**cosine, "lr_steps": [5], "log_every": 3}, 600) == path_params(cosine, 600)
    assert path_params({**cosine, "lr_final_fraction": 0.5}, 600) != path_params(cosine, 600)


def test_the_resume_key_follows_the_code_train_runs(tmp_path):
    """A finished run of other code is not handed back as this code's result; an edit to
    code train never runs leaves an interrupted run resumable."""
    from dainet.training.runstate import STAGE_MODULE, code_digest
    pkg = tmp_path / "dainet"
    for rel, text in {"__init__.py": "", "training/__init__.py": "", "training/stage.py": "from dainet.a import f\n",
                      "a.py": "def f():\n    from dainet.sub import b\n", "sub/__init__.py": "", "sub/b.py": "y = 2\n",
                      "evaluation.py": "z = 1\n", "notes.txt": "not code"}.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    entry = pkg / "training" / "stage.py"

    def key():
        return code_digest(entry, tmp_path)
    first = key()
    assert key() == first
    (pkg / "notes.txt").write_text("still not code")
    (pkg / "evaluation.py").write_text("z = 2\n")   # not imported by the stage
    assert key() == first
    (pkg / "sub" / "b.py").write_text("y = 3\n")    # imported inside a function, two levels down
    assert key() != first
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    assert key() == first
    (pkg / "training" / "stage.py").write_text("from dainet.a import f\n# edited\n")
    assert key() != first
    assert len(code_digest()) == 16 and STAGE_MODULE.is_file()   # the train stage's own code


def test_logger_appends_and_a_resumed_log_equals_an_uninterrupted_one(tmp_path):
    from dainet.training.logging import TrainLogger

    def logger(d: Path):
        return TrainLogger(d / "live", d / "loss.csv", d / "history.jsonl", show_progress=False)
    rows = [{"iteration": i, "epoch": 0, "loss": 1.0 / i, "lr": 0.1 * i, "images_per_s": 2.0} for i in range(1, 6)]
    full = logger(tmp_path / "full")
    full.resume(0)
    for r in rows:
        full.row(r)
    full.close()
    a = logger(tmp_path / "split")
    a.resume(0)
    for r in rows[:2]:
        a.row(r)
    with open(tmp_path / "split" / "loss.csv", "a") as f:
        f.write("# mark\n")       # rows are appended: earlier lines are never rewritten
    a.row(rows[2])
    assert (tmp_path / "split" / "loss.csv").read_text().splitlines()[3:] == ["# mark", "3,0,0.333333,0.3,2"]
    a.row(rows[3])                # logged after the checkpoint (3 rows), then killed
    b = logger(tmp_path / "split")
    assert b.resume(3, [(0, 3, 0.5)]) == 3
    b.val(5, 0.25)
    for r in rows[3:]:
        b.row(r)
    b.close()
    for name in ("loss.csv", "history.jsonl", "live/plots/metrics/train/loss.tsv", "live/plots/metrics/train/lr.tsv"):
        assert (tmp_path / "split" / name).read_text() == (tmp_path / "full" / name).read_text(), name
    assert (tmp_path / "split" / "live/plots/metrics/train/val_loss.tsv").read_text().split() == [
        "step", "val_loss", "3", "0.5", "5", "0.25"]


def test_training_pictures_survive_a_rerun_that_resumes(tmp_path):
    """DVC deletes the stage's outputs (DVCLive's folder) before it reruns `train`; a rerun
    that resumes (an interrupted run, or a finished one after a dependency changed without
    changing the training) must still end with every picture, as the curves do."""
    import shutil
    from dainet.training.logging import TrainLogger
    pic = {"clean": np.full((2, 3, 4, 6), 0.25, np.float32), "dark": np.full((2, 1, 4, 6), 0.75, np.float32)}
    rows = [{"iteration": i, "epoch": 0, "loss": 1.0 / i, "lr": 0.1, "images_per_s": 2.0} for i in (1, 2)]
    run = tmp_path / "data" / "train" / "run"
    live = tmp_path / "plots" / "live"

    def logger():
        return TrainLogger(live, tmp_path / "plots" / "loss.csv", run / "history.jsonl", show_progress=False)
    a = logger()
    a.resume(0)
    for r in rows:
        a.row(r)
        a.images(r["iteration"], pic)
    a.close()
    first = {p.name: p.read_bytes() for p in (live / "plots" / "images").glob("*.png")}
    assert sorted(first) == ["train_0000001.png", "train_0000002.png"]
    shutil.rmtree(tmp_path / "plots")           # what `dvc repro` does before the stage runs
    b = logger()
    assert b.resume(2) == 2
    b.close()
    assert {p.name: p.read_bytes() for p in (live / "plots" / "images").glob("*.png")} == first
    c = logger()                                # a fresh run in the same folder: no stale pictures
    c.resume(0)
    c.close()
    assert not list((live / "plots" / "images").glob("*.png")) and not list((run / "images").glob("*.png"))


def small_net_and_opt(seed: int):
    import jittor as jt
    from dainet.training.optim import make_optimizer
    jt.set_global_seed(seed)
    net = jt.nn.Sequential(jt.nn.Linear(3, 2))
    return net, make_optimizer(net, "sgd", 0.1, 0.1, 0.9, 0.0)


def weights_of(net) -> dict:
    return {k: v.numpy().copy() for k, v in net.state_dict().items()}


def test_a_corrupt_last_checkpoint_falls_back_to_the_previous_one_then_starts_over(tmp_path, capsys):
    from dainet.training.runstate import Checkpoints, LoopState
    ck = Checkpoints(tmp_path / "train", "0123456789abcdef")
    net, opt = small_net_and_opt(0)
    at1 = weights_of(net)
    ck.save(net, opt, LoopState(iteration=1), periodic=False)
    net, opt = small_net_and_opt(1)
    ck.save(net, opt, LoopState(iteration=2), periodic=False)
    assert ck.prev.exists() and ck.last.exists()
    ck.last.write_bytes(ck.last.read_bytes()[:100])           # torn by a full disk, say
    net, opt = small_net_and_opt(2)
    state = Checkpoints(tmp_path / "train", ck.key).load(net, opt)
    out = capsys.readouterr().out
    assert state.iteration == 1 and "set aside" in out and f"resuming {ck.prev} at iteration 1" in out
    assert all(np.array_equal(v, at1[k]) for k, v in weights_of(net).items())
    assert ck.last.with_suffix(".corrupt").exists() and not ck.last.exists()
    ck.prev.write_bytes(b"not a zip")
    net, opt = small_net_and_opt(3)
    fresh = weights_of(net)
    assert Checkpoints(tmp_path / "train", ck.key).load(net, opt) is None
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"train: {ck.prev} cannot be resumed (")
    assert lines[0].endswith(f"; set aside as {ck.prev.with_suffix('.corrupt')}")
    assert lines[1] == f"train: no usable resumable state in {ck.folder} (prev.ckpt set aside as *.corrupt); starting over"
    assert all(np.array_equal(v, fresh[k]) for k, v in weights_of(net).items())   # untouched


def test_a_rank_that_finds_no_checkpoint_folder_yet_starts_over(tmp_path):
    """Under MPI rank 0 alone creates the checkpoint root: another rank may look first."""
    from dainet.training.runstate import Checkpoints
    net, opt = small_net_and_opt(0)
    assert Checkpoints(tmp_path / "not-yet", "0123456789abcdef").load(net, opt) is None
    assert not (tmp_path / "not-yet").exists()


def test_non_finite_weights_are_never_saved(tmp_path):
    from dainet.training.runstate import Checkpoints, LoopState, TrainingDiverged
    ck = Checkpoints(tmp_path / "train", "0123456789abcdef")
    net, opt = small_net_and_opt(0)
    ck.save(net, opt, LoopState(iteration=1), periodic=False)
    before = ck.last.read_bytes()
    net[0].weight.update(net[0].weight * float("nan"))
    with pytest.raises(TrainingDiverged, match=r"weights became non-finite .* last good checkpoint .*iteration 1"):
        ck.save(net, opt, LoopState(iteration=2), periodic=True)
    assert ck.last.read_bytes() == before and not list(ck.folder.glob("iter_*"))


# -- the train stage on the tiny profile ---------------------------------------------------

@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_data, weights):  # noqa: F811
    out = tmp_path_factory.mktemp("uninterrupted")
    assert stage_main("train")(train_args(tiny_data, weights, out, tiny_data["params"])) == 0
    return out


def assert_same_run(a: Path, b: Path) -> None:
    """Same curves (every computed column), weights, optimiser buffers and DVCLive curves."""
    from dainet.weights.checkpoint import load_checkpoint
    ra, rb = read_rows(a / "plots" / "loss.csv"), read_rows(b / "plots" / "loss.csv")
    for r in ra + rb:
        del r["images_per_s"]      # measured, not computed
    assert ra == rb
    ka, kb = load_checkpoint(run_dir(a) / "last.ckpt"), load_checkpoint(run_dir(b) / "last.ckpt")
    assert ka["loop"]["iteration"] == kb["loop"]["iteration"]
    diff = [k for k in ka["model"] if not np.array_equal(ka["model"][k], kb["model"][k])]
    assert not diff, diff
    for ga, gb in zip(ka["optimizer"]["groups"], kb["optimizer"]["groups"]):
        assert all(np.array_equal(x, y) for key in ("values", "m") for x, y in zip(ga[key], gb[key]))
    for tsv in ("loc2", "total", "val_loss"):
        p = Path("plots") / "live" / "plots" / "metrics" / "train" / f"{tsv}.tsv"
        assert (a / p).read_text() == (b / p).read_text(), tsv


@slow
@pytest.mark.parametrize("signum, at, status", [(signal.SIGTERM, 2, 143), (signal.SIGINT, 1, 130)],
                         ids=["SIGTERM-between-checkpoints", "SIGINT-at-a-checkpoint"])
def test_a_signal_saves_after_the_iteration_and_the_resumed_run_matches(tmp_path, tiny_data, weights,  # noqa: F811
                                                                        uninterrupted, signum, at, status, capsys):
    args = train_args(tiny_data, weights, tmp_path, tiny_data["params"])
    proc = subprocess.run([sys.executable, "-c", SELF_SIGNAL, str(at), str(int(signum)), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == status, proc.stderr[-3000:]
    name = signal.Signals(signum).name
    assert err[-1].startswith(f"train: stopped by {name} after iteration {at + 1}; "), err[-1]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "model.ckpt").exists() and not (tmp_path / "train.json").exists()
    assert stage_main("train")(args) == 0
    assert f"at iteration {at + 1}" in capsys.readouterr().out
    assert_same_run(uninterrupted, tmp_path)


@slow
def test_a_corrupt_last_checkpoint_resumes_from_the_previous_one(tmp_path, tiny_data, weights,  # noqa: F811
                                                                 uninterrupted, capsys):
    import shutil
    shutil.copytree(uninterrupted / "ckpt", tmp_path / "ckpt")
    run = run_dir(tmp_path)
    (run / "last.ckpt").write_bytes((run / "last.ckpt").read_bytes()[:4096])   # killed mid-copy, say
    assert stage_main("train")(train_args(tiny_data, weights, tmp_path, tiny_data["params"])) == 0
    out = capsys.readouterr().out
    assert f"resuming {run / 'prev.ckpt'} at iteration 2" in out and "set aside" in out
    assert (run / "last.corrupt").exists()
    assert_same_run(uninterrupted, tmp_path)


@slow
def test_raised_max_iter_continues_other_intervals_resume_and_validation_streams(tmp_path, tiny_data, weights,  # noqa: F811
                                                                                 monkeypatch, capsys):
    import dainet.training.loop as loop
    from dainet.data.dataset import ValDataset
    loaded, seen = [0], []
    real_item, real_val = ValDataset.__getitem__, loop.validation_loss

    def counting_item(self, index):
        loaded[0] += 1
        return real_item(self, index)

    def watching_val(net, batches, step, seed):
        def watched():
            for i, batch in enumerate(batches):
                seen.append((i, loaded[0]))
                yield batch
        return real_val(net, watched(), step, seed)
    monkeypatch.setattr(ValDataset, "__getitem__", counting_item)
    monkeypatch.setattr(loop, "validation_loss", watching_val)

    step = {**TINY, "train.lr_schedule": "step", "train.warmup_iters": 0, "train.clean_warmup_iters": 1}
    first = write_params(tmp_path / "a.yaml", {**step, "train.max_iter": 2})
    args = train_args(tiny_data, weights, tmp_path, first)
    assert stage_main("train")(args) == 0
    batch = TINY["train.batch_size"]
    assert seen and all(n <= (i + 1) * batch for i, n in seen), seen   # one batch in memory, not the set
    run = run_dir(tmp_path)
    stale = run / ".last.ckpt.k3j5h7g9.tmp"
    stale.write_bytes(b"left by a kill")
    more = write_params(tmp_path / "b.yaml", {**step, "train.max_iter": 4, "train.log_every": 2,
                                              "train.image_every": 0, "train.checkpoint_every": 1,
                                              "train.device": "auto"})
    capsys.readouterr()
    assert stage_main("train")(args[:-1] + [str(more)]) == 0
    out = capsys.readouterr().out
    assert f"resuming {run / 'last.ckpt'} at iteration 2" in out and "starting over" not in out
    assert not stale.exists() and run_dir(tmp_path) == run
    assert [int(r["iteration"]) for r in read_rows(tmp_path / "plots" / "loss.csv")] == [1, 2, 4]
    assert json.loads((tmp_path / "train.json").read_text())["iterations"] == 4
    lowered = write_params(tmp_path / "c.yaml", {**step, "train.max_iter": 3})
    from dainet.errors import UserError
    with pytest.raises(UserError, match=r"at iteration 4, past this run's 3 .*train.max_iter 3"):
        stage_main("train")(args[:-1] + [str(lowered)])


@slow
def test_a_step_with_a_non_finite_gradient_never_reaches_the_checkpoint(tmp_path, tiny_data, weights,  # noqa: F811
                                                                        monkeypatch):
    import jittor as jt
    import dainet.training.loop as loop
    from dainet.training.runstate import TrainingDiverged
    from dainet.weights.checkpoint import load_checkpoint
    real, calls = loop.total_loss, [0]

    def poisoned(terms):   # iteration 3: a finite loss whose gradient is 0 * inf = NaN
        loss = real(terms)
        calls[0] += 1
        return loss + 0 * jt.sqrt(loss - loss) if calls[0] == 3 else loss
    monkeypatch.setattr(loop, "total_loss", poisoned)
    params = write_params(tmp_path / "p.yaml", {**TINY, "train.checkpoint_every": 1})
    with pytest.raises(TrainingDiverged) as err:
        stage_main("train")(train_args(tiny_data, weights, tmp_path, params))
    msg = str(err.value)
    assert "\n" not in msg and "non-finite in the step of iteration 3" in msg and "(iteration 2) is kept" in msg
    run = run_dir(tmp_path)
    last, before = load_checkpoint(run / "last.ckpt"), load_checkpoint(run / "iter_0000002.ckpt")
    assert last["loop"]["iteration"] == 2 and not (run / "iter_0000003.ckpt").exists()
    assert all(np.isfinite(v).all() and np.array_equal(v, before["model"][k]) for k, v in last["model"].items())


@slow
def test_a_kill_9_after_epoch_ends_resumes_to_the_uninterrupted_run_and_its_best_model(tmp_path, tiny_data,  # noqa: F811
                                                                                       weights, capsys):
    """Three epochs (6 iterations each on the tiny set), a validation pass at each end, the
    weights of every 2nd iteration kept; one run killed with SIGKILL (no handler, nothing
    saved) in iteration 15, then resumed from its periodic checkpoint at 14, across two epoch
    ends and their validations. Both runs pick the same best iteration by validation loss,
    and model.ckpt holds exactly that iteration's weights."""
    from dainet.weights.checkpoint import load_checkpoint
    epochs = {**TINY, "train.max_iter": 18, "train.checkpoint_every": 2, "train.ema_decay": 0.0,
              "train.image_every": 0}
    params = write_params(tmp_path / "p.yaml", epochs)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert stage_main("train")(train_args(tiny_data, weights, whole, params)) == 0
    args = train_args(tiny_data, weights, killed, params)
    proc = subprocess.run([sys.executable, "-c", SELF_SIGNAL, "14", str(int(signal.SIGKILL)), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert load_checkpoint(run_dir(killed) / "last.ckpt")["loop"]["iteration"] == 14
    capsys.readouterr()
    assert stage_main("train")(args) == 0
    assert f"resuming {run_dir(killed) / 'last.ckpt'} at iteration 14" in capsys.readouterr().out
    assert_same_run(whole, killed)

    metrics = json.loads((killed / "train.json").read_text())
    assert metrics == {**json.loads((whole / "train.json").read_text()),
                       "images_per_s": metrics["images_per_s"], "seconds_this_run": metrics["seconds_this_run"]}
    tsv = killed / "plots" / "live" / "plots" / "metrics" / "train" / "val_loss.tsv"
    rows = [line.split("\t") for line in tsv.read_text().splitlines()[1:]]
    val = {int(step): float(loss) for step, loss in rows}
    assert sorted(val) == [6, 12, 18]
    best = min(val, key=val.get)
    assert metrics["best_iteration"] == best and metrics["best_val_loss"] == pytest.approx(val[best], rel=1e-5)
    model = load_checkpoint(killed / "model.ckpt")["model"]
    kept = load_checkpoint(run_dir(killed) / f"iter_{best:07d}.ckpt")["model"]
    assert all(np.array_equal(model[k], kept[k]) for k in kept)
    if best != 18:   # the best is not simply the last weights
        last = load_checkpoint(run_dir(killed) / "last.ckpt")["model"]
        assert any(not np.array_equal(model[k], last[k]) for k in kept)
