"""Multi-process training from the params: with ``train.processes`` N > 1 the `train` stage
runs itself under Jittor's MPI mode, ``mpirun -np N`` (``train.mpi_hostfile``: several
machines), so ``dvc repro`` launches it; rank 0 writes, as under a hand-made mpirun.

No Jittor here: the stage decides before anything compiles.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

from dainet.cli import RANK_VARS, inside_mpi  # noqa: F401  (the stage plumbing's, used here)
from dainet.errors import UserError


def mpirun_command(processes: int, hostfile: str, argv: list[str], module: str, root: str, as_root: bool,
                   which=shutil.which, env=os.environ) -> list[str]:
    """``mpirun -np N [--hostfile F] [--allow-run-as-root] -x PYTHONPATH=<root> python -m <module> <argv>``:
    every rank runs ``module`` and ``dainet`` of the checkout ``root`` (an experiment's copy
    included), not those an editable install points at."""
    mpirun = which("mpirun")
    if mpirun is None:
        raise UserError(f"params train.processes is {processes} but mpirun is not installed "
                        "(Open MPI: `python -m dainet doctor --install` as root, or apt-get install openmpi-bin)")
    cmd = [mpirun, "-np", str(processes)]
    if hostfile:
        if not os.path.isfile(hostfile):
            raise UserError(f"params train.mpi_hostfile: {hostfile}: no such file")
        cmd += ["--hostfile", hostfile]
    if as_root:
        cmd.append("--allow-run-as-root")
    path = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return cmd + ["-x", f"PYTHONPATH={path}", sys.executable, "-m", module, *argv]


def check_devices(processes: int, hostfile: str, device: str, gpus: int) -> None:
    """One machine's ranks each need a GPU of their own when training on CUDA."""
    if processes > 1 and not hostfile and device != "cpu" and 0 < gpus < processes:
        raise UserError(f"params train.processes is {processes} but this machine has {gpus} GPU(s) "
                        "(train.mpi_hostfile spreads the ranks over several machines; train.device cpu runs "
                        "CPU ranks)")


def run_under_mpi(cmd: list[str]) -> int:
    """Run ``cmd``, passing SIGTERM / SIGINT on to mpirun (which passes them to the ranks:
    each saves its state as a single process does); the ranks' exit status."""
    child = subprocess.Popen(cmd)

    def forward(signum, _frame):
        child.send_signal(signum)
    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
