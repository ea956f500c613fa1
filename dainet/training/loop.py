"""The training loop (spec §9): batches, lr, the step, the update, logging, validation,
checkpoints and stopping, iteration by iteration.

Reproducible and resumable by construction: the data order of an epoch, each sample's
augmentation and each batch's DarkISP draw are seeded by (seed, epoch, index) and
(seed, iteration), so a run resumed from its checkpoint continues with exactly the
batches, darkening and optimiser momentum of an uninterrupted run. Jittor's float32
rounding depends on where its lazy graph is cut, so the points where the loop reads or
syncs values are part of the numerics: they are the same in every session of a run.
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from dainet.jt import jt
from dainet.errors import UserError
from dainet.training.config import TrainConfig
from dainet.training.ema import WeightAverage
from dainet.training.logging import TrainLogger
from dainet.training.objective import total_loss
from dainet.training.optim import clip_grad_norm, set_lr
from dainet.training.runstate import Checkpoints, LoopState, TrainingDiverged
from dainet.training.schedule import scheduled_lr, total_iterations
from dainet.training.signals import StopSignals
from dainet.training.step import StepLosses, validation_loss


@dataclass
class Run:
    """What one training run's loop works with."""
    net: jt.nn.Module
    opt: jt.optim.Optimizer
    step: StepLosses
    cfg: TrainConfig
    base_lr: float                       # before the schedule (scaled for batch and processes)
    checkpoints: Checkpoints
    logger: TrainLogger
    average: WeightAverage | None = None   # params train.ema_decay > 0
    is_main: bool = True                 # the process that writes (rank 0)
    on_best: Callable[[], None] | None = None   # saves the best model (the average swapped in)


@dataclass
class Batches:
    """Where the loop's data come from.

    ``train(epoch, b)`` -> (images float32 [N, 3, S, S], targets [N, G, 5]) of batch ``b`` of
    ``epoch``; ``val()`` -> an iterable of such pairs, read one at a time."""
    train: Callable[[int, int], tuple]
    per_epoch: int
    val: Callable[[], Iterable]


def trained_weights(opt) -> list:
    """The weights ``opt`` updates (those ``opt.backward`` syncs before computing gradients)."""
    return [p for pg in opt.param_groups for p in pg["params"] if not p.is_stop_grad()]


def buffer_state(net, opt) -> dict:
    """``{name: array}`` of the model state that is not a trained weight (BatchNorm statistics)."""
    trained = {id(p) for p in trained_weights(opt)}
    return {k: v.numpy() for k, v in net.state_dict().items() if id(v) not in trained}


def check_finite(values: dict[str, float], iteration: int, checkpoints: Checkpoints) -> None:
    """A non-finite loss term stops the run before its update reaches the weights
    (``iteration`` counts from 1, as the logged rows)."""
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        raise TrainingDiverged(
            f"loss became non-finite at iteration {iteration} "
            f"({', '.join(f'{k}={v}' for k, v in bad.items())}); {checkpoints.kept()}. "
            "Lower train.lr or check the data")


class Throughput:
    """Images per second over the iterations since the last logged row."""

    def __init__(self):
        self.t, self.n = time.perf_counter(), 0

    def take(self) -> float:
        now = time.perf_counter()
        rate = self.n / max(now - self.t, 1e-9)
        self.t, self.n = now, 0
        return rate


def begin(run: Run, batches: Batches) -> tuple[LoopState, int]:
    """``(state, total)``: the resumed state (a new one when there is none) and the run's
    iterations; the logs restart from the state's rows."""
    cfg, ckpts = run.cfg, run.checkpoints
    state = ckpts.load(run.net, run.opt, run.average) or LoopState()
    total = total_iterations(cfg.max_iter, cfg.max_epochs, batches.per_epoch)
    if state.iteration > total:
        raise UserError(f"{ckpts.last} is at iteration {state.iteration}, past this run's {total} "
                        f"(train.max_iter {cfg.max_iter}, train.max_epochs {cfg.max_epochs}); raise them, "
                        f"or move {ckpts.folder} away to train from scratch")
    if run.is_main:
        found = run.logger.resume(state.log_rows, state.val_history)
        if found < state.log_rows:
            print(f"train: {ckpts.history} holds {found} of the {state.log_rows} logged rows; "
                  "the curves miss the others")
    return state, total


def forward(run: Run, batches: Batches, it: int, total: int) -> tuple[dict, dict, float, int]:
    """``(terms, pictures, lr, n_images)`` of iteration ``it``: its batch, its lr set on the
    optimiser, the step's loss terms (the graph only: nothing runs yet)."""
    cfg = run.cfg
    images, targets = batches.train(*divmod(it, batches.per_epoch))
    lr = scheduled_lr(cfg.lr_schedule, run.base_lr, it, total, list(cfg.lr_steps), cfg.lr_gamma,
                      cfg.warmup_iters, cfg.lr_final_fraction)
    set_lr(run.opt, lr)
    terms, pictures = run.step(jt.array(images), jt.array(targets), np.random.default_rng([cfg.seed, it]),
                               clean_only=it < cfg.clean_warmup_iters)
    return terms, pictures, lr, len(images)


def update(run: Run, terms: dict, it: int) -> dict[str, float]:
    """Backward, clip, step; then the loss terms read as floats (``total`` added).

    Jittor is lazy: the update runs when the weights are next read. The loss is read here,
    before that, so a non-finite loss stops the run with the update never applied (reading
    it before ``opt.step()``, or reading the gradient norm, cuts the graph differently and
    changes the float32 rounding of the sample's later steps, measured). A finite loss whose
    update is not finite (0 * inf in a gradient, an lr overflowing float32) is caught where
    the weights are read: by the next iteration's loss, and by ``Checkpoints.save``."""
    opt = run.opt
    opt.backward(total_loss(terms))
    clip_grad_norm(opt, run.cfg.clip_grad_norm)
    opt.step()
    values = {k: float(v.item()) for k, v in terms.items()}
    values["total"] = float(sum(values.values()))
    check_finite(values, it + 1, run.checkpoints)
    return values


def log(run: Run, state: LoopState, epoch: int, values: dict, lr: float, pictures: dict,
        meter: Throughput, total: int) -> None:
    """The iteration's row every ``train.log_every`` iterations (and the last), its pictures
    every ``train.image_every``."""
    cfg = run.cfg
    if state.iteration % cfg.log_every == 0 or state.iteration == total:
        row = {"iteration": state.iteration, "epoch": epoch, **values, "lr": lr, "images_per_s": meter.take()}
        state.log_rows += 1
        state.last_row = row
        state.images_per_s_sum += row["images_per_s"]
        if run.is_main:
            run.logger.row(row)
    if run.is_main and cfg.image_every > 0 and state.iteration % cfg.image_every == 0:
        run.logger.images(state.iteration, pictures)


def validate(run: Run, batches: Batches, state: LoopState, epoch: int) -> None:
    """The validation loss at an epoch end (with the weight average swapped in); a new best
    is saved (``on_best``)."""
    with run.average.swapped_in(run.net) if run.average is not None else nullcontext():
        val = validation_loss(run.net, batches.val(), run.step, run.cfg.seed)
        state.val_history.append((epoch, state.iteration, val))
        if run.is_main:
            run.logger.val(state.iteration, val)
        if val < state.best_val:
            state.best_val, state.best_iteration = val, state.iteration
            if run.is_main and run.on_best is not None:
                run.on_best()


def end_of_iteration(run: Run, batches: Batches, state: LoopState, epoch: int, total: int) -> bool:
    """Validation at an epoch end, and ``last.ckpt`` at an epoch end, every
    ``train.checkpoint_every`` iterations and at the last; True when a checkpoint was written."""
    epoch_end = state.iteration % batches.per_epoch == 0 or state.iteration == total
    periodic = state.iteration % run.cfg.checkpoint_every == 0
    saved = periodic or epoch_end or state.iteration == total
    if run.average is not None and saved:   # the update of this iteration, before it is used
        jt.sync(trained_weights(run.opt))
        run.average.fold(run.net, state.iteration)
    if epoch_end:
        validate(run, batches, state, epoch)
    if run.is_main and saved:
        run.checkpoints.save(run.net, run.opt, state, periodic, average=run.average)
    return saved


def fit(run: Run, batches: Batches, stop_after: int | None = None,
        signals: StopSignals | None = None) -> LoopState:
    """Train (or resume) ``run`` to its last iteration and return the loop's state.

    ``stop_after`` ends the loop early after that iteration (tests of resuming); ``signals``
    ends it after the iteration a signal arrived in, with ``state.stopped_by`` set. With a
    weight average (``run.average``), folded in after every update, validation, the best
    model and the checkpoints use the average.
    """
    state, total = begin(run, batches)
    bar = run.logger.progress(total=total, initial=state.iteration)
    meter = Throughput()
    held = None   # a signal came: the buffers to save at the top of the next iteration
    while state.iteration < total:
        it = state.iteration
        terms, pictures, lr, n_images = forward(run, batches, it, total)
        # What opt.backward() runs first: the previous update, with this forward pending. Done
        # here, a stop saves the weights as an uninterrupted run computes them (Jittor's
        # rounding depends on where its lazy graph is cut, and on its allocator's history, so
        # a resumed run is bit-identical in the tested cases, otherwise equal to rounding).
        jt.sync(trained_weights(run.opt))
        if run.average is not None:
            run.average.fold(run.net, it)   # the weights after update `it` (a no-op before the first)
        if held is not None:
            if run.is_main:
                run.checkpoints.save(run.net, run.opt, state, periodic=False, buffers=held, average=run.average)
            state.stopped_by = signals.signum
            break
        values = update(run, terms, it)
        state.iteration = it + 1
        meter.n += n_images
        bar.update(1)
        bar.set_postfix(loss=f"{values['total']:.3f}", lr=f"{lr:.2e}")
        epoch = it // batches.per_epoch
        log(run, state, epoch, values, lr, pictures, meter, total)
        saved = end_of_iteration(run, batches, state, epoch, total)
        if signals is not None and signals.requested() is not None and state.iteration < total:
            if saved:   # this iteration's checkpoint is the one to resume from
                state.stopped_by = signals.signum
                break
            held = buffer_state(run.net, run.opt)   # the weights follow at the top of the next iteration
        if stop_after is not None and state.iteration >= stop_after and held is None:
            break
    bar.close()
    return state
