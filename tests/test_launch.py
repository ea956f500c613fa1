"""`train.processes`: the train stage runs itself under mpirun (dainet.training.launch), so
`dvc repro` trains with several processes from a params key. CPU ranks here."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, write_params
from dainet.errors import UserError
from dainet.training import launch
from helpers import train_args


def test_the_mpirun_command_carries_the_stage_arguments(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("gpu1 slots=8\ngpu2 slots=8\n")
    cmd = launch.mpirun_command(4, str(hosts), ["--out", "m.ckpt"], "stages.train", "/p", as_root=True,
                                which=lambda _: "/usr/bin/mpirun", env={"PYTHONPATH": "/x"})
    assert cmd == ["/usr/bin/mpirun", "-np", "4", "--hostfile", str(hosts), "--allow-run-as-root",
                   "-x", f"PYTHONPATH=/p{os.pathsep}/x", sys.executable, "-m", "stages.train", "--out", "m.ckpt"]
    cmd = launch.mpirun_command(2, "", [], "stages.train", "/p", False, which=lambda _: "mpirun", env={})
    assert "--allow-run-as-root" not in cmd and "PYTHONPATH=/p" in cmd


def test_missing_mpirun_or_hostfile_is_a_params_error(tmp_path):
    with pytest.raises(UserError, match=r"^params train.processes is 2 but mpirun is not installed"):
        launch.mpirun_command(2, "", [], "stages.train", "/p", False, which=lambda _: None)
    with pytest.raises(UserError, match=r"^params train.mpi_hostfile: .*hosts: no such file$"):
        launch.mpirun_command(2, str(tmp_path / "hosts"), [], "stages.train", "/p", False,
                              which=lambda _: "mpirun")


def test_one_machines_cuda_ranks_need_a_gpu_each():
    with pytest.raises(UserError, match=r"train.processes is 4 but this machine has 2 GPU"):
        launch.check_devices(4, "", "cuda", 2)
    launch.check_devices(2, "", "cuda", 2)
    launch.check_devices(4, "", "cpu", 2)          # CPU ranks
    launch.check_devices(4, "hosts", "auto", 1)    # spread over machines
    launch.check_devices(4, "", "auto", 0)         # no GPU: CPU ranks


def test_ranks_are_recognised_by_their_mpi_variables():
    assert launch.inside_mpi({"OMPI_COMM_WORLD_SIZE": "2"}) and launch.inside_mpi({"PMI_SIZE": "2"})
    assert not launch.inside_mpi({})


def test_without_nccl_each_rank_of_a_gpu_machine_gets_its_own_gpu(tmp_path):
    from dainet import gpu_stack as gs
    f = gs.CudaFacts(gpus=2, driver=(12, 4))
    stack = gs.GpuStack("system", "", nvcc="/usr/local/cuda/bin/nvcc")
    env = {"OMPI_COMM_WORLD_LOCAL_RANK": "3"}
    gs.materialise(stack, f, env, tmp_path)
    assert env["use_nccl"] == "0" and env["CUDA_VISIBLE_DEVICES"] == "1"
    env = {"OMPI_COMM_WORLD_LOCAL_RANK": "1", "CUDA_VISIBLE_DEVICES": "5"}   # the user's choice stays
    gs.materialise(stack, f, env, tmp_path)
    assert env["CUDA_VISIBLE_DEVICES"] == "5"


MPI_ENV = dict(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_btl_vader_single_copy_mechanism="none", OMPI_MCA_rmaps_base_oversubscribe="1")


def run_group(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own process group; on timeout kill the whole group (mpirun and its
    ranks), not only ``cmd``, and fail the test."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True, **kw)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        pytest.fail(f"{cmd[0]} still running after {timeout} s:\n{out[-2000:]}{err[-2000:]}")
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed (make test installs openmpi-bin as root)")
def test_the_train_stage_runs_two_processes_from_the_params(tmp_path, tiny_data, weights):
    """What `dvc repro` runs (dvc.yaml's train cmd) with train.processes 2: two ranks train,
    rank 0 alone writes the model, the metrics and the curve."""
    params = write_params(tmp_path / "params.yaml", {"train.processes": 2, "train.max_iter": 2,
                                                                "train.clean_warmup_iters": 1},
                          base=tiny_data["params"])
    r = run_group([sys.executable, str(ROOT / "stages" / "train.py"),
                   *train_args(tiny_data, weights, tmp_path, params)], timeout=900, env=dict(os.environ, **MPI_ENV))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.startswith("train: 2 processes: ") and " -np 2 " in r.stdout
    metrics = json.loads((tmp_path / "train.json").read_text())
    assert metrics["processes"] == 2 and metrics["iterations"] == 2
    assert (tmp_path / "model.ckpt").is_file()
    assert r.stdout.count("train: dainet 2 iterations") == 1          # rank 0 alone reports and writes


def test_under_mpi_a_failing_stage_leaves_without_waiting_in_finalize(tmp_path):
    """dainet.cli.run inside a rank: the error is printed and the process ends at once
    (os._exit), so no MPI_Finalize waits for ranks that wait for this one."""
    script = tmp_path / "stage.py"
    script.write_text(textwrap.dedent("""
        import atexit, sys
        from dainet.cli import run
        atexit.register(lambda: print("finalize-like exit handler ran"))
        def main(argv):
            raise RuntimeError("rank failed")
        run(main)
    """))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, OMPI_COMM_WORLD_SIZE="2"))
    assert r.returncode == 1 and "RuntimeError: rank failed" in r.stderr
    assert "exit handler ran" not in r.stdout
    plain = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600,
                           env={k: v for k, v in os.environ.items() if k not in launch.RANK_VARS})
    assert plain.returncode == 1 and "exit handler ran" in plain.stdout   # outside MPI: a normal exit


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed (make test installs openmpi-bin as root)")
def test_one_failing_rank_ends_the_job_instead_of_hanging_it(tmp_path):
    """Rank 1 fails while rank 0 waits for it in a collective: mpirun ends both."""
    script = tmp_path / "stage.py"
    script.write_text(textwrap.dedent("""
        import dainet.jt  # noqa: F401  (configures Jittor before it loads)
        import jittor as jt
        from dainet.cli import run
        def main(argv):
            if jt.rank == 1:
                raise RuntimeError("rank 1 failed")
            jt.array([0.0]).mpi_all_reduce().sync()   # waits for rank 1
            return 0
        run(main)
    """))
    r = run_group([shutil.which("mpirun"), "-np", "2", sys.executable, str(script)], timeout=600,
                  env=dict(os.environ, **MPI_ENV))
    assert r.returncode != 0 and "rank 1 failed" in r.stderr


def test_a_child_killed_by_a_signal_does_not_end_the_test_session(tmp_path):
    """conftest's handlers: with Jittor's own, pytest ended with status 1 and no report as
    soon as a subprocess was killed (a timeout's SIGKILL)."""
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path)
    (tmp_path / "test_kill.py").write_text(
        "import subprocess\n\ndef test_kill():\n    p = subprocess.Popen(['sleep', '30'])\n"
        "    p.kill()\n    assert p.wait() == -9\n")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_kill.py"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
