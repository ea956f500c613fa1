"""Stage `train`: DAI-Net joint training (spec §9), or the DSFD baseline (`train.method: dsfd`).

    python -m stages.train --train-list data/lists/train.txt --val-list data/lists/val.txt \
        --init data/weights/init.ckpt --decomp data/weights/decomp.ckpt \
        --checkpoints runs/train --out data/weights/model.ckpt \
        --metrics metrics/train.json --plots plots/train [--params params.yaml]

Resumable: ``--checkpoints`` (no DVC output, so no DVC command deletes it; in an experiment
copy under ``.dvc/tmp/exps/``, the workspace's: :mod:`dainet.training.runstate`) holds one
folder per run, locked while a process trains it,
``<fingerprint>/`` -- the hash of what decides the optimisation path: the params that
shape it (not the log / picture / checkpoint intervals, device or workers; ``max_iter``
only under the cosine schedule), the input weights and lists, the process count, the
``dainet`` code training runs (:func:`dainet.training.runstate.code_digest`) --
with ``last.ckpt`` (weights, momentum, counters) and ``prev.ckpt`` before it,
``iter_<n>.ckpt``, ``best.ckpt`` and the log history (see
:class:`dainet.training.runstate.Checkpoints`). Re-running after an interruption continues
the run of these params; a raised ``max_iter`` continues it too. SIGTERM or Ctrl-C
finish the current iteration, save ``last.ckpt`` and exit with status 143 / 130; so does
the end of the process that started the stage (``dvc repro`` killed), status 129.
Multi-GPU: ``train.processes`` N > 1 makes this script run itself under ``mpirun -np N``
(``train.mpi_hostfile`` for several machines; :mod:`dainet.training.launch`), as a hand-made
``mpirun -np N python -m stages.train ...`` does (Jittor MPI; rank 0 writes).

Calls :func:`dainet.training.stage.train` (the loop itself: :func:`dainet.training.loop.fit`).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from dainet.cli import leave_now, run
from dainet.params import load_params


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--train-list", "--val-list", "--init", "--decomp", "--checkpoints", "--out",
                 "--metrics", "--plots"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)  # tests of resuming
    args = ap.parse_args(argv)

    params = load_params(args.params)
    section = params.section("train")
    processes = section.value("processes", int)
    from dainet.training import launch
    if processes > 1 and not launch.inside_mpi():
        from dainet.runtime import configure
        hostfile = section.value("mpi_hostfile", str)
        launch.check_devices(processes, hostfile, section.value("device", str), int(configure().facts.get("gpus", 0)))
        cmd = launch.mpirun_command(processes, hostfile, list(sys.argv[1:] if argv is None else argv),
                                    "stages.train", str(Path(__file__).resolve().parents[1]),
                                    as_root=os.geteuid() == 0)
        print(f"train: {processes} processes: {' '.join(cmd)}", flush=True)
        return launch.run_under_mpi(cmd)
    # Jittor (and every module that imports it) only now: bad params fail before it compiles anything
    from dainet.training.stage import train
    from dainet.utils.fileio import write_json

    result = train(params, args.train_list, args.val_list, args.init, args.decomp, args.checkpoints,
                   args.out, args.plots, stop_after=args.stop_after)
    state = result.state
    if state.stopped_by is not None:
        if result.is_main:
            print(f"train: stopped by {signal.Signals(state.stopped_by).name} after iteration {state.iteration}; "
                  f"{result.checkpoints.last} holds it, run the stage again to continue", file=sys.stderr)
        # the state is saved: leave now, as exit handlers may wait for ever on workers (Jittor's
        # compile pool) that the same Ctrl-C to the process group ended
        leave_now(128 + state.stopped_by)
    if not result.is_main:
        return 0
    if args.stop_after is not None and state.iteration < result.total and state.iteration == args.stop_after:
        print(f"train: stopped after iteration {state.iteration} as asked")
    write_json(args.metrics, result.metrics())
    print(f"train: {result.cfg.method} {state.iteration} iterations on {result.device}; best val loss "
          f"{state.best_val:.4f} at iteration {state.best_iteration} -> {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
