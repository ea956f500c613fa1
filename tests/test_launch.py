"""`train.processes`: the train stage runs itself under mpirun (dainet.training.launch), so
`dvc repro` trains with several processes from a params key. CPU ranks here."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, write_params
from dainet.errors import UserError
from dainet.training import launch
from helpers import train_args


def test_the_mpirun_command_carries_the_stage_arguments(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("gpu1 slots=8\ngpu2 slots=8\n")
    cmd = launch.mpirun_command(4, str(hosts), ["--out", "m.ckpt"], "/p/stages/train.py", as_root=True,
                                which=lambda _: "/usr/bin/mpirun")
    assert cmd == ["/usr/bin/mpirun", "-np", "4", "--hostfile", str(hosts), "--allow-run-as-root",
                   sys.executable, "/p/stages/train.py", "--out", "m.ckpt"]
    assert "--allow-run-as-root" not in launch.mpirun_command(2, "", [], "s.py", False, which=lambda _: "mpirun")


def test_missing_mpirun_or_hostfile_is_a_params_error(tmp_path):
    with pytest.raises(UserError, match=r"^params train.processes is 2 but mpirun is not installed"):
        launch.mpirun_command(2, "", [], "s.py", False, which=lambda _: None)
    with pytest.raises(UserError, match=r"^params train.mpi_hostfile: .*hosts: no such file$"):
        launch.mpirun_command(2, str(tmp_path / "hosts"), [], "s.py", False, which=lambda _: "mpirun")


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


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not installed (make test installs openmpi-bin as root)")
def test_the_train_stage_runs_two_processes_from_the_params(tmp_path, tiny_data, weights):
    """What `dvc repro` runs (dvc.yaml's train cmd) with train.processes 2: two ranks train,
    rank 0 alone writes the model, the metrics and the curve."""
    params = write_params(tmp_path / "params.yaml", {"train.processes": 2, "train.max_iter": 2},
                          base=tiny_data["params"])
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_btl_vader_single_copy_mechanism="none", OMPI_MCA_rmaps_base_oversubscribe="1")
    r = subprocess.run([sys.executable, str(ROOT / "stages" / "train.py"),
                        *train_args(tiny_data, weights, tmp_path, params)], env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.startswith("train: 2 processes: ") and " -np 2 " in r.stdout
    metrics = json.loads((tmp_path / "train.json").read_text())
    assert metrics["processes"] == 2 and metrics["iterations"] == 2
    assert (tmp_path / "model.ckpt").is_file()
    assert r.stdout.count("train: dainet 2 iterations") == 1          # rank 0 alone reports and writes
