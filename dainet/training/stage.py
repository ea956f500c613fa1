"""The `train` stage as one function (stages/train.py calls :func:`train`; spec §9).

:func:`train` assembles the run from the params -- datasets, the network (the DSFD
baseline drops the reflectance decoder ``ref.*``), the frozen decomposer, optimiser,
losses with both shots' priors, the run fingerprint -- runs
:func:`dainet.training.loop.fit` under :class:`~dainet.training.signals.StopSignals`,
and on a finished run copies the best weights to ``out``. The stage script writes the
metrics JSON from the returned :class:`TrainRun`.

This module imports Jittor: import it only after the params have been read.
"""
from __future__ import annotations

import dataclasses
import math
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from dainet.jt import jt

from dainet.boxes.priors import both_shots
from dainet.data.augment import AugmentConfig
from dainet.data.darkisp import DarkISPConfig
from dainet.data.dataset import ValDataset, WiderFaceDataset
from dainet.errors import UserError
from dainet.models import build_model, init_weights
from dainet.models.config import ModelConfig
from dainet.models.decomp import build_decomposer
from dainet.params import Section
from dainet.runtime import use_device
from dainet.weights.convert import ConvertConfig
from dainet.training.config import TrainConfig
from dainet.training.loop import Batches, Run, fit
from dainet.training.runstate import (Checkpoints, LoopState, code_digest, file_digest, fingerprint, path_params,
                                      shared_root)
from dainet.training.signals import StopSignals
from dainet.training.step import StepLosses
from dainet.training.ema import WeightAverage
from dainet.training.logging import TrainLogger
from dainet.training.objective import LossWeights
from dainet.training.optim import make_optimizer
from dainet.training.schedule import scaled_lr, total_iterations
from dainet.utils.fileio import atomic_path
from dainet.weights import load_into
from dainet.weights.checkpoint import load_checkpoint, save_checkpoint

# the params sections, besides `train`, whose values decide the optimisation path
FINGERPRINT_SECTIONS = ("model", "priors", "darkisp", "augment")


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


@dataclass
class TrainRun:
    """What one session of :func:`train` did."""
    cfg: TrainConfig
    state: LoopState
    device: str
    world: int
    is_main: bool
    iters_per_epoch: int
    total: int
    checkpoints: Checkpoints
    seconds: float

    def metrics(self) -> dict:
        """The flat metrics JSON of the stage (``metrics/train.json``)."""
        state = self.state
        return {
            "method": self.cfg.method, "device": self.device, "processes": self.world,
            "iterations": state.iteration, "epochs": state.iteration / self.iters_per_epoch,
            **{f"final_{k}": round(v, 6) for k, v in state.last_row.items()
               if k not in ("iteration", "epoch", "lr", "images_per_s")},
            # null when no validation ran
            "best_val_loss": round(state.best_val, 6) if math.isfinite(state.best_val) else None,
            "best_iteration": state.best_iteration,
            "images_per_s": round(state.images_per_s_sum / max(state.log_rows, 1), 3),
            "seconds_this_run": round(self.seconds, 1),
        }


def build_networks(params: Section, cfg: TrainConfig, init: str, decomp: str):
    """``(net, decomposer)``: the network from ``init`` (without ``ref.*`` for the DSFD
    baseline) and, for DAI-Net, the frozen eval-mode decomposer from ``decomp`` (else None)."""
    net = build_model(params.section("model"), reflectance=cfg.reflectance)
    weights = load_checkpoint(init)["model"]
    if not cfg.reflectance:  # the DSFD baseline has no reflectance decoder
        weights = {k: v for k, v in weights.items() if not k.startswith("ref.")}
    load_into(net, weights, init)
    decomposer = None
    if cfg.reflectance:
        decomposer = build_decomposer(params.section("model"))
        load_into(decomposer, load_checkpoint(decomp)["model"], decomp)
        decomposer.eval()
        for p in decomposer.parameters():
            p.stop_grad()
    return net, decomposer


def seeded_step(params: Section, **train_overrides) -> tuple[jt.nn.Module, jt.optim.Optimizer, StepLosses]:
    """``(net, optimiser, step)`` of the `train` stage for these params, on the seeded
    initialisation of `convert_weights` (``convert.seed``, ``backbone_init``, ``neck_init``,
    ``zero_init_residual``) and
    a seeded decomposer, without files or data: for benchmarks and the device tests.
    ``train_overrides`` replace `train` values (e.g. ``method="dsfd"``); one process."""
    sec, convert = params.section("train"), params.section("convert").load(ConvertConfig)
    cfg = sec.load(TrainConfig, image_size=params.section("augment").value("image_size", int),
                   losses=sec.load(LossWeights))
    cfg = dataclasses.replace(cfg, **train_overrides)
    seed = convert.seed
    net = init_weights(build_model(params.section("model"), reflectance=cfg.reflectance), seed,
                       convert.backbone_init, convert.neck_init, convert.zero_init_residual)
    decomposer = None
    if cfg.reflectance:
        decomposer = init_weights(build_decomposer(params.section("model")), seed)
        decomposer.eval()
        for p in decomposer.parameters():
            p.stop_grad()
    opt = make_optimizer(net, cfg.optimizer, scaled_lr(cfg.lr, cfg.batch_size, 1, cfg.lr_reference_batch),
                         cfg.ref_lr_mult, cfg.momentum, cfg.weight_decay, cfg.train_l2norm)
    step = StepLosses(net, decomposer, cfg, params.section("darkisp").load(DarkISPConfig),
                      both_shots(params.section("priors"), params.section("model").load(ModelConfig)))
    return net, opt, step


def run_length(cfg: TrainConfig, images: int, world: int, train_list: str) -> tuple[int, int]:
    """``(iterations per epoch, iterations of the run)`` for ``images`` usable training
    images over ``world`` processes; a UserError when not one batch fits, or when the clean
    warm-up would take the whole run."""
    iters_per_epoch = images // (cfg.batch_size * world)
    if iters_per_epoch < 1:
        raise UserError(
            f"{train_list}: {images} usable images is less than one batch "
            f"(train.batch_size {cfg.batch_size} x {world} processes)")
    total = total_iterations(cfg.max_iter, cfg.max_epochs, iters_per_epoch)
    if cfg.clean_warmup_iters >= total and (cfg.reflectance or cfg.dsfd_input != "clean"):
        raise UserError(
            f"params train.clean_warmup_iters is {cfg.clean_warmup_iters} but the run has {total} iterations "
            f"(train.max_iter {cfg.max_iter}, train.max_epochs {cfg.max_epochs} of {iters_per_epoch}): it would "
            f"train detection on clean images only and still report method {cfg.method}; lower "
            "train.clean_warmup_iters or raise train.max_iter")
    return iters_per_epoch, total


def train(params: Section, train_list: str, val_list: str, init: str, decomp: str, checkpoints: str,
          out: str, plots: str, stop_after: int | None = None) -> TrainRun:
    """Train (or resume) the run of these params and inputs; on a finished run (not
    stopped by a signal) rank 0 writes the best weights to ``out``."""
    sec, aug_sec = params.section("train"), params.section("augment")
    cfg = sec.load(TrainConfig, image_size=aug_sec.value("image_size", int), losses=sec.load(LossWeights))
    device = use_device(cfg.device)
    jt.set_global_seed(cfg.seed)
    world, is_main = jt.world_size, jt.rank == 0

    net, decomposer = build_networks(params, cfg, init, decomp)
    augment = aug_sec.load(AugmentConfig)
    train_ds = WiderFaceDataset(train_list, augment, seed=cfg.seed, batch_size=cfg.batch_size,
                                shuffle=True, num_workers=cfg.num_workers, drop_last=True)
    val_ds = ValDataset(val_list, cfg.image_size, augment.min_face, batch_size=cfg.batch_size)
    iters_per_epoch, total = run_length(cfg, train_ds.num_images, world, train_list)

    base_lr = scaled_lr(cfg.lr, cfg.batch_size, world, cfg.lr_reference_batch)
    opt = make_optimizer(net, cfg.optimizer, base_lr, cfg.ref_lr_mult, cfg.momentum, cfg.weight_decay,
                         cfg.train_l2norm)
    step = StepLosses(net, decomposer, cfg, params.section("darkisp").load(DarkISPConfig),
                      both_shots(params.section("priors"), params.section("model").load(ModelConfig)))
    # the validation list picks the best model, part of the resumed state
    key = fingerprint(path_params(sec.to_dict(), total),
                      {s: params.section(s).to_dict() for s in FINGERPRINT_SECTIONS},
                      file_digest(init), file_digest(decomp) if cfg.reflectance else "",
                      file_digest(train_list), file_digest(val_list), world, code_digest())
    ckpts = Checkpoints(shared_root(checkpoints), key)
    if is_main:
        if ckpts.root != Path(checkpoints):
            print(f"train: an experiment copy; the run state is the workspace's {ckpts.root}")
        ckpts.prepare()
    if world > 1:   # a barrier: the other ranks look at the run folder once rank 0 has prepared it
        jt.array([0.0]).mpi_all_reduce().sync()
    logger = TrainLogger(Path(plots) / "live", Path(plots) / "loss.csv", ckpts.history, enabled=is_main)

    average = WeightAverage(cfg.ema_decay) if cfg.ema_decay > 0 else None

    def save_best():
        save_checkpoint(ckpts.best, {"model": net.state_dict(), "method": cfg.method})

    t0 = time.perf_counter()
    try:
        with StopSignals(watch_parent=world == 1) as signals:
            run = Run(net, opt, step, cfg, base_lr, ckpts, logger, average, is_main, on_best=save_best)
            state = fit(run, Batches(EpochBatches(train_ds), iters_per_epoch, lambda: val_ds),
                        stop_after=stop_after, signals=signals)
        if state.stopped_by is None and is_main:
            if not ckpts.best.exists():  # resumed after the best was chosen and the file went missing
                with average.swapped_in(net) if average is not None else nullcontext():
                    save_best()   # the final weights (or their average) stand in
            with atomic_path(out) as tmp:
                shutil.copyfile(ckpts.best, tmp)
    finally:
        logger.close()
        ckpts.lock.release()
        train_ds.terminate()   # its worker processes, if any (Jittor's Dataset)
    return TrainRun(cfg=cfg, state=state, device=device, world=world, is_main=is_main,
                    iters_per_epoch=iters_per_epoch, total=total, checkpoints=ckpts,
                    seconds=time.perf_counter() - t0)
