"""Stage `train`: DAI-Net joint training (spec §9), or the DSFD baseline (`train.method: dsfd`).

    python stages/train.py --train-list data/lists/train.txt --val-list data/lists/val.txt \
        --init data/weights/init.ckpt --decomp data/weights/decomp.ckpt \
        --checkpoints data/train --out data/weights/model.ckpt \
        --metrics metrics/train.json --plots plots/train [--params params.yaml]

Resumable: ``--checkpoints`` (a DVC ``persist`` output) holds one folder per run,
``<fingerprint>/`` -- the hash of what decides the optimisation path: the params that
shape it (not the log / picture / checkpoint intervals, device or workers; ``max_iter``
only under the cosine schedule), the input weights and lists, the process count --
with ``last.ckpt`` (weights, momentum, counters) and ``prev.ckpt`` before it,
``iter_<n>.ckpt``, ``best.ckpt`` and the log history (see
:class:`dainet.training.joint.Checkpoints`). Re-running after an interruption continues
the run of these params; a raised ``max_iter`` continues it too. SIGTERM or Ctrl-C
finish the current iteration, save ``last.ckpt`` and exit with status 143 / 130.
Multi-GPU: ``mpirun -np N python stages/train.py ...`` (Jittor MPI; rank 0 writes).
"""
from __future__ import annotations

import argparse
import math
import shutil
import signal
import sys
import time
from pathlib import Path

from dainet.cli import run
from dainet.errors import UserError
from dainet.params import load_params


class EpochBatches:
    """``(epoch, b) -> batch b of epoch``, restarting the dataset only when the order jumps."""

    def __init__(self, dataset):  # a WiderFaceDataset
        self.ds, self.epoch, self.next_b, self.it = dataset, None, None, None

    def __call__(self, epoch: int, b: int):
        if epoch != self.epoch or b != self.next_b:
            self.it = iter(self.ds.set_epoch(epoch, b))
            self.epoch = epoch
        self.next_b = b + 1
        return next(self.it)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--train-list", "--val-list", "--init", "--decomp", "--checkpoints", "--out",
                 "--metrics", "--plots"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)  # tests of resuming
    args = ap.parse_args(argv)

    params = load_params(args.params)
    # Jittor (and every module that imports it) only now: bad params fail before it compiles anything
    import dainet  # noqa: F401  (Jittor set-up before jittor)
    import jittor as jt

    from dainet.boxes.priors import both_shots
    from dainet.data.augment import AugmentConfig
    from dainet.models.config import ModelConfig
    from dainet.data.darkisp import DarkISPConfig
    from dainet.data.dataset import ValDataset, WiderFaceDataset
    from dainet.models import build_model
    from dainet.models.decomp import build_decomposer
    from dainet.training.joint import (Checkpoints, StepLosses, StopSignals, TrainConfig, file_digest,
                                       fingerprint, fit, path_params, use_device)
    from dainet.training.logging import TrainLogger
    from dainet.training.optim import make_optimizer
    from dainet.training.schedule import scaled_lr, total_iterations
    from dainet.utils.fileio import atomic_path, write_json
    from dainet.weights import load_into
    from dainet.weights.checkpoint import load_checkpoint, save_checkpoint

    sec, aug_sec = params.section("train"), params.section("augment")
    cfg = TrainConfig.from_params(sec, aug_sec)
    device = use_device(cfg.device)
    jt.set_global_seed(cfg.seed)
    world, is_main = jt.world_size, jt.rank == 0

    net = build_model(params.section("model"), reflectance=cfg.reflectance)
    init = load_checkpoint(args.init)["model"]
    if not cfg.reflectance:  # the DSFD baseline has no reflectance decoder
        init = {k: v for k, v in init.items() if not k.startswith("ref.")}
    load_into(net, init, args.init)
    decomposer = None
    if cfg.reflectance:
        decomposer = build_decomposer(params.section("model"))
        load_into(decomposer, load_checkpoint(args.decomp)["model"], args.decomp)
        decomposer.eval()
        for p in decomposer.parameters():
            p.stop_grad()

    augment = AugmentConfig.from_params(aug_sec)
    train_ds = WiderFaceDataset(args.train_list, augment, seed=cfg.seed, batch_size=cfg.batch_size,
                                shuffle=True, num_workers=cfg.num_workers, drop_last=True)
    val_ds = ValDataset(args.val_list, cfg.image_size, augment.min_face, batch_size=cfg.batch_size)
    iters_per_epoch = train_ds.num_images // (cfg.batch_size * world)
    if iters_per_epoch < 1:
        raise UserError(
            f"{args.train_list}: {train_ds.num_images} usable images is less than one batch "
            f"(train.batch_size {cfg.batch_size} x {world} processes)")

    base_lr = scaled_lr(cfg.lr, cfg.batch_size, world, cfg.lr_reference_batch)
    opt = make_optimizer(net, cfg.optimizer, base_lr, cfg.ref_lr_mult, cfg.momentum, cfg.weight_decay,
                         cfg.train_l2norm)
    step = StepLosses(net, decomposer, cfg, DarkISPConfig.from_params(params.section("darkisp")),
                      both_shots(params.section("priors"), ModelConfig.from_section(params.section("model"))))
    total = total_iterations(cfg.max_iter, cfg.max_epochs, iters_per_epoch)
    # the validation list picks the best model, part of the resumed state
    key = fingerprint(path_params(sec.to_dict(), total),
                      {s: params.section(s).to_dict() for s in ("model", "priors", "darkisp", "augment")},
                      file_digest(args.init), file_digest(args.decomp) if cfg.reflectance else "",
                      file_digest(args.train_list), file_digest(args.val_list), world)
    ckpts = Checkpoints(args.checkpoints, key)
    plots = Path(args.plots)
    if is_main:
        ckpts.prepare()
    logger = TrainLogger(plots / "live", plots / "loss.csv", ckpts.history, enabled=is_main)

    def save_best():
        save_checkpoint(ckpts.best, {"model": net.state_dict(), "method": cfg.method})

    t0 = time.perf_counter()
    state = None
    try:
        with StopSignals() as signals:
            state = fit(net, opt, step, cfg, EpochBatches(train_ds), iters_per_epoch, lambda: val_ds, ckpts,
                        logger, base_lr, is_main=is_main, on_best=save_best, stop_after=args.stop_after,
                        signals=signals)
    finally:
        logger.close()
    if state.stopped_by is not None:
        if is_main:
            print(f"train: stopped by {signal.Signals(state.stopped_by).name} after iteration {state.iteration}; "
                  f"{ckpts.last} holds it, run the stage again to continue", file=sys.stderr)
        return 128 + state.stopped_by
    if not is_main:
        return 0
    if args.stop_after is not None and state.iteration < total and state.iteration == args.stop_after:
        print(f"train: stopped after iteration {state.iteration} as asked")
    if not ckpts.best.exists():  # resumed after the best was chosen and the file went missing
        save_best()
    with atomic_path(args.out) as tmp:
        shutil.copyfile(ckpts.best, tmp)
    seconds = time.perf_counter() - t0
    final = state.last_row
    write_json(args.metrics, {
        "method": cfg.method, "device": device, "processes": world,
        "iterations": state.iteration, "epochs": state.iteration / iters_per_epoch,
        **{f"final_{k}": round(v, 6) for k, v in final.items() if k not in ("iteration", "epoch", "lr", "images_per_s")},
        # null when no validation ran
        "best_val_loss": round(state.best_val, 6) if math.isfinite(state.best_val) else None,
        "best_iteration": state.best_iteration,
        "images_per_s": round(state.images_per_s_sum / max(state.log_rows, 1), 3),
        "seconds_this_run": round(seconds, 1),
    })
    print(f"train: {cfg.method} {state.iteration} iterations on {device}; best val loss "
          f"{state.best_val:.4f} at iteration {state.best_iteration} -> {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
