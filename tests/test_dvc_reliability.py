"""What DVC's own commands meet (issue 24): params changed while a stage runs, experiments
that must run their own checkout's code, run state that DVC does not manage, the params check
that runs before any stage can lose its outputs."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TINY, write_params
from dainet import params as params_mod
from dainet.cli import run
from dainet.params import load_params


def _edit(path, dotted: str, value) -> None:
    tree = yaml.safe_load(path.read_text())
    *parents, last = dotted.split(".")
    node = tree
    for key in parents:
        node = node[key]
    node[last] = value
    path.write_text(yaml.safe_dump(tree, sort_keys=False))


def _stage(path, reads, edit):
    """A stage's main: reads ``reads`` from ``path``, then the file is edited under it."""
    def main(argv):
        p = load_params(path)
        for dotted in reads:   # "<section>.<key>", or "<section>" read whole
            section, _, key = dotted.partition(".")
            p.section(section).raw(key) if key else p.section(section).to_dict()
        edit()
        return 0
    return main


def test_a_stage_whose_params_changed_under_it_fails_naming_the_key(tmp_path, capsys):
    path = write_params(tmp_path / "params.yaml")
    main = _stage(path, ["predict.conf_thresh", "predict.nms_thresh"],
                  lambda: _edit(path, "predict.conf_thresh", 0.5))
    with pytest.raises(SystemExit) as exc:
        run(main)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"{path} changed while this stage ran (predict.conf_thresh: 0.05 -> 0.5)" in err, err
    assert "nms_thresh" not in err


def test_a_change_to_keys_the_stage_did_not_read_lets_it_finish(tmp_path):
    path = write_params(tmp_path / "params.yaml")
    main = _stage(path, ["predict.conf_thresh"], lambda: _edit(path, "train.lr", 0.5))
    with pytest.raises(SystemExit) as exc:
        run(main)
    assert exc.value.code == 0


def test_a_section_read_whole_names_the_leaf_that_changed(tmp_path, capsys):
    path = write_params(tmp_path / "params.yaml")
    main = _stage(path, ["model"], lambda: _edit(path, "model.norm", "group"))
    with pytest.raises(SystemExit) as exc:
        run(main)
    assert exc.value.code == 2
    assert "(model.norm: 'batch' -> 'group')" in capsys.readouterr().err


def test_a_params_file_made_unreadable_under_a_stage_fails_it(tmp_path, capsys):
    path = write_params(tmp_path / "params.yaml")
    main = _stage(path, ["predict.conf_thresh"], lambda: path.write_text("predict: [unclosed\n"))
    with pytest.raises(SystemExit) as exc:
        run(main)
    assert exc.value.code == 2
    assert "changed while this stage ran and is no longer readable" in capsys.readouterr().err


def test_reads_are_recorded_through_values_loaders_and_sub_sections(tmp_path):
    path = write_params(tmp_path / "params.yaml")
    from dainet.inference.multiscale import MultiScaleConfig
    p = load_params(path)
    p.section("predict").load(MultiScaleConfig)
    p.section("sample").section("dark").value("gamma", tuple[float, float])
    assert {"predict.conf_thresh", "predict.vote_iou", "sample.dark.gamma"} <= p.reads
    assert "sample" not in p.reads and "sample.dark" not in p.reads   # walking down reads nothing
    params_mod.forget_loaded()


# ------------------------------------------------ experiments run their own checkout's code

def _dvc(repo, *args):
    """``dvc <args>`` in ``repo``, stage commands run by this interpreter."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=600)


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True)


def _mini_project(repo, *names: str) -> dict:
    """A git + DVC repo holding this project's code and the stages ``names`` of its dvc.yaml,
    with tiny params; the stages' specs."""
    shutil.copytree(ROOT / "dainet", repo / "dainet", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "stages", repo / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    specs = {n: yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][n] for n in names}
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": specs}, sort_keys=False))
    write_params(repo / "params.yaml", TINY)
    _git(repo, "init", "-q")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=repo, check=True)
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    return specs


@pytest.mark.slow
def test_a_temp_experiment_runs_the_dainet_of_its_own_copy(tmp_path):
    """`dvc exp run --temp` copies the workspace, changes included, to .dvc/tmp/exps and runs
    there: the stage must import that copy's dainet, not the one the editable install names."""
    repo = tmp_path / "repo"
    repo.mkdir()
    spec = _mini_project(repo, "check", "sample")["sample"]
    assert spec["cmd"].startswith("python -m stages.sample")
    marker = tmp_path / "marker"
    module = repo / "dainet" / "data" / "sample.py"   # a change in the workspace only, not committed
    module.write_text(module.read_text() + f"\nimport os\nopen({str(marker)!r}, 'a').write(os.getcwd() + '\\n')\n")
    r = _dvc(repo, "exp", "run", "--temp")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    ran_in = marker.read_text().split()   # failed before: no marker (the editable install's dainet ran)
    assert len(ran_in) == 1 and f"{os.sep}.dvc{os.sep}tmp{os.sep}exps{os.sep}" in ran_in[0], ran_in


# ------------------------------------------------ resumable state that DVC does not manage

def _train_run_root() -> str:
    cmd = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]["cmd"].split()
    return cmd[cmd.index("--checkpoints") + 1]


def _outs(stage: dict) -> list[str]:
    return [o if isinstance(o, str) else next(iter(o)) for kind in ("outs", "metrics", "plots")
            for o in stage.get(kind, [])]


def test_the_run_state_is_no_dvc_output_and_git_ignores_it():
    """dvc checkout / dvc exp apply / a rerun replace a stage's outputs: the resumable state
    must not be one (it was: data/train, a persist output, deleted by both commands)."""
    root = Path(_train_run_root())
    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        for out in _outs(stage):
            assert not (root == Path(out) or Path(out) in root.parents or root in Path(out).parents), (name, out)
    probe = f"{root.as_posix()}/0123456789abcdef/last.ckpt"
    r = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", "--no-index", probe])
    assert r.returncode == 0, f"git does not ignore {probe}"


def test_an_experiment_copy_keeps_its_run_state_in_the_workspace(tmp_path):
    from dainet.training.runstate import shared_root
    copy = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpab12cd"
    copy.mkdir(parents=True)
    assert shared_root("runs/train", copy) == tmp_path / "repo" / "runs" / "train"
    assert shared_root("runs/train", copy / "sub") == tmp_path / "repo" / "runs" / "train"
    assert shared_root("runs/train", tmp_path / "repo") == Path("runs/train")
    assert shared_root(tmp_path / "abs", copy) == tmp_path / "abs"
    assert shared_root("runs/train", tmp_path / "repo" / ".dvc" / "tmp" / "exps") == Path("runs/train")


_HOLD = "import sys, time; from dainet.training.runstate import RunLock; " \
        "assert RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)"


def _holder(folder):
    """A process holding ``folder``'s run lock (a queued experiment training it)."""
    p = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_run_folder_trained_by_another_process_is_refused_and_never_pruned(tmp_path, capsys):
    from dainet.errors import UserError
    from dainet.training import runstate
    from dainet.training.runstate import RunLock
    root = tmp_path / "runs"
    busy = root / "0000000000000001"
    holder = _holder(busy)
    try:
        with pytest.raises(UserError, match=rf"^{busy}: another process \(pid {holder.pid}\) is training these"):
            runstate.Checkpoints(root, busy.name).prepare()
        assert RunLock.is_held(busy)
        for i in range(2, 2 + runstate.KEEP_RUNS + 1):   # more runs than are kept: the oldest is the busy one
            ck = runstate.Checkpoints(root, f"{i:016x}")
            ck.prepare()
            ck.lock.release()
        assert busy.is_dir()                    # in use: kept, though the oldest
        assert not (root / f"{2:016x}").exists()   # not in use: pruned
    finally:
        holder.kill()
        holder.wait()
    assert not RunLock.is_held(busy)            # the kernel dropped the lock of the killed process
    ck = runstate.Checkpoints(root, busy.name)
    ck.prepare()
    ck.lock.release()


@pytest.mark.slow
def test_a_dainet_run_that_would_never_leave_the_clean_warm_up_is_refused(tmp_path, tiny_data, weights):
    from dainet.errors import UserError
    from conftest import stage_main
    from helpers import train_args
    params = write_params(tmp_path / "p.yaml", {**TINY, "train.max_iter": 2, "train.clean_warmup_iters": 2})
    with pytest.raises(UserError, match=r"^params train.clean_warmup_iters is 2 but the run has 2 iterations "
                                        r"\(train.max_iter 2, .*clean images only and still report method dainet"):
        stage_main("train")(train_args(tiny_data, weights, tmp_path, params))
    assert not (tmp_path / "model.ckpt").exists()


# ------------------------------------------------ the params check before any stage can lose outputs

@pytest.mark.slow
def test_a_bad_params_file_stops_dvc_repro_before_any_stage_loses_its_outputs(tmp_path):
    """A misspelt key beside the real one, or a data root that is not there, used to give
    "Data and pipelines are up to date" (no stage depends on the key), or to cost a stage its
    outputs (DVC deletes them before the stage's command fails). A good change reruns only
    the stages it concerns."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _mini_project(repo, "check", "sample")
    r = _dvc(repo, "repro")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    made = sorted(p.relative_to(repo) for p in (repo / "data" / "sample").rglob("*"))
    assert made
    params = repo / "params.yaml"
    good = params.read_text()

    params.write_text(good.replace("  vote_iou:", "  vote_iuo: 0.4\n  vote_iou:", 1))
    r = _dvc(repo, "repro")
    assert r.returncode != 0 and "error: params.yaml: predict.vote_iuo: unknown key" in r.stderr + r.stdout, \
        r.stdout[-2000:] + r.stderr[-2000:]

    params.write_text(good.replace("wider_root: data/sample/widerface", "wider_root: data/real/widerface"))
    _edit(params, "sample.seed", 7)   # a change the sample stage would rerun for: it must not start
    r = _dvc(repo, "repro")
    assert r.returncode != 0, r.stdout[-2000:]
    assert "error: params.yaml: data.wider_root: data/real/widerface does not exist" in r.stderr + r.stdout
    assert sorted(p.relative_to(repo) for p in (repo / "data" / "sample").rglob("*")) == made

    params.write_text(good)
    _edit(params, "train.lr", 0.5)   # good, and no concern of the sample stage
    r = _dvc(repo, "repro")
    assert r.returncode == 0 and "Running stage 'check'" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Running stage 'sample'" not in r.stdout


# ------------------------------------------------ signals as schedulers send them

LONG_RUN = {**TINY, "train.max_iter": 400, "train.checkpoint_every": 1000, "train.image_every": 0,
            "train.log_every": 1}


def _started(run_root: Path, timeout: float = 600) -> None:
    """Wait until the run below ``run_root`` has logged two iterations."""
    import time
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        logs = list(run_root.glob("*/history.jsonl"))
        if logs and len(logs[0].read_text().splitlines()) >= 2:
            return
        time.sleep(0.2)
    raise AssertionError(f"no training progress below {run_root}")


def _saved_iteration(run_root: Path) -> int:
    from dainet.weights.checkpoint import load_checkpoint
    (last,) = run_root.glob("*/last.ckpt")
    return load_checkpoint(last)["loop"]["iteration"]


@pytest.mark.slow
def test_ctrl_c_to_the_process_group_saves_and_exits_130_though_workers_die(tmp_path, tiny_data, weights):
    """Ctrl-C reaches the data workers too; Jittor's SIGCHLD handler then ended the stage
    with status 1 ("Caught SIGCHLD. Maybe out of memory") instead of the documented 130."""
    import signal
    from helpers import train_args
    params = write_params(tmp_path / "p.yaml", {**LONG_RUN, "train.num_workers": 2})
    p = subprocess.Popen([sys.executable, "-m", "stages.train", *train_args(tiny_data, weights, tmp_path, params)],
                         cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _started(tmp_path / "ckpt")
        os.killpg(p.pid, signal.SIGINT)
        out, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 130, err[-3000:]
    assert "Caught SIGCHLD" not in err and "stopped by SIGINT after iteration" in err, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]   # no worker hit by it
    assert 2 <= _saved_iteration(tmp_path / "ckpt") < LONG_RUN["train.max_iter"]


_PARENT = "import subprocess, sys; p = subprocess.Popen(sys.argv[1:], stdout=open('out', 'w'), " \
          "stderr=open('err', 'w')); print(p.pid, flush=True); p.wait()"


@pytest.mark.slow
def test_training_saves_and_stops_when_the_process_that_started_it_ends(tmp_path, tiny_data, weights):
    """SIGTERM to `dvc repro` alone (docker stop's signal to PID 1): DVC left, its stage ran on
    as an orphan to the end, and the SIGKILL that follows lost everything since the last
    periodic checkpoint. Here the parent (DVC's place) dies and the stage must save and stop."""
    import signal
    import time
    from helpers import train_args
    params = write_params(tmp_path / "p.yaml", LONG_RUN)
    cmd = [sys.executable, "-m", "stages.train", *train_args(tiny_data, weights, tmp_path, params)]
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, *cmd], cwd=tmp_path, stdout=subprocess.PIPE,
                              text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    child = int(parent.stdout.readline())
    try:
        _started(tmp_path / "ckpt")
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        end = time.monotonic() + 300
        while time.monotonic() < end:   # the orphan's parent is now init (or a subreaper)
            try:
                state = Path(f"/proc/{child}/status").read_text().split("State:")[1].split()[0]
            except (FileNotFoundError, IndexError):
                break
            if state == "Z":
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the orphaned stage kept training")
    finally:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
    err = (tmp_path / "err").read_text()
    assert "has ended; saving the state and stopping" in err and "stopped by SIGHUP after iteration" in err, err[-3000:]
    assert 2 <= _saved_iteration(tmp_path / "ckpt") < LONG_RUN["train.max_iter"]
