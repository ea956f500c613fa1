"""DAI-Net joint training (spec §9) and the DSFD baseline: one step, validation, the loop.

Reproducible and resumable by construction: the data order of an epoch, each sample's
augmentation and each batch's DarkISP draw are seeded by (seed, epoch, index) and
(seed, iteration), so a run resumed from its checkpoint continues with exactly the
batches, darkening and optimiser momentum of an uninterrupted run.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import signal
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from dainet.jt import jt
import numpy as np

from dainet.boxes.priors import PriorSpec
from dainet.data.darkisp import DarkISPConfig, darken_batch
from dainet.errors import UserError
from dainet.losses.multibox import MultiBoxLoss
from dainet.training.ema import WeightAverage
from dainet.training.objective import LossWeights, dainet_terms, detection_terms, total_loss
from dainet.training.optim import clip_grad_norm, load_optimizer_state, optimizer_state, set_lr
from dainet.training.runstate import RunLock
from dainet.training.schedule import scheduled_lr, total_iterations
from dainet.utils.fileio import remove_stale_temps
from dainet.weights import WeightError, check_state_dict
from dainet.weights.checkpoint import load_checkpoint, load_into, save_checkpoint


class TrainingDiverged(UserError):
    """The loss or the weights became NaN or infinite; nothing non-finite is saved, the last good checkpoint is kept."""


@dataclass(frozen=True)
class TrainConfig:
    """Params section `train`; ``image_size`` (the crop side, params `augment`) and ``losses``
    (:class:`LossWeights`, also read from `train`) are given::

        train.load(TrainConfig, image_size=augment.value("image_size", int), losses=train.load(LossWeights))
    """
    method: str
    dsfd_input: str
    device: str
    seed: int
    batch_size: int
    num_workers: int
    optimizer: str
    lr: float
    lr_reference_batch: int
    ref_lr_mult: float
    train_l2norm: bool
    momentum: float
    weight_decay: float
    lr_steps: tuple[int, ...]
    lr_gamma: float
    warmup_iters: int
    lr_schedule: str
    lr_final_fraction: float
    clean_warmup_iters: int
    max_iter: int
    max_epochs: int
    clip_grad_norm: float
    ema_decay: float
    bn_streams: str
    match_iou: float
    neg_pos_ratio: int
    smooth_l1_beta: float
    checkpoint_every: int
    log_every: int
    image_every: int
    image_size: int
    losses: LossWeights

    @property
    def reflectance(self) -> bool:
        return self.method == "dainet"


class StepLosses:
    """Forward + objective of one training batch, for DAI-Net or the DSFD baseline.

    ``light`` [N, 3, S, S] clean images in [0, 1], ``targets`` [N, G, 5] normalised xyxy +
    label (padding label -1). DarkISP darkens the batch; the frozen decomposer gives
    I and the reflectance targets of both images in one no-grad pass.
    """

    def __init__(self, net, decomposer, cfg: TrainConfig, darkisp: DarkISPConfig,
                 shots: tuple[PriorSpec, PriorSpec]):
        """``shots``: the first- and second-shot priors (:func:`dainet.boxes.priors.both_shots`)."""
        self.net, self.decomposer, self.cfg, self.darkisp = net, decomposer, cfg, darkisp
        self.multibox = MultiBoxLoss(cfg.match_iou, cfg.neg_pos_ratio, shots[1].variances, cfg.smooth_l1_beta)
        hw = (cfg.image_size, cfg.image_size)
        # priors depend only on the crop size: made once, reused every step
        self.priors1, self.priors2 = (jt.array(spec.priors(hw)).stop_grad() for spec in shots)

    def darken(self, light: jt.Var, rng: np.random.Generator) -> jt.Var:
        dark, _ = darken_batch(light, rng, self.darkisp)
        return dark

    def decompose(self, dark: jt.Var, light: jt.Var):
        """(R_dark, I_dark, R_light, I_light) from one batched pass of the frozen net."""
        n = dark.shape[0]
        with jt.no_grad():
            R, I = self.decomposer(jt.concat([dark, light], dim=0))
        R, I = R.stop_grad(), I.stop_grad()
        return R[:n], I[:n], R[n:], I[n:]

    def __call__(self, light: jt.Var, targets: jt.Var, rng: np.random.Generator, clean_only: bool = False):
        """Returns (terms {name: scalar Var}, pictures {name: Var} for logging).

        ``clean_only`` (the first ``train.clean_warmup_iters`` iterations; not in the paper):
        detection on the clean images only, both methods alike -- a stand-in, on the
        from-scratch sample, for the clean-image (ImageNet) pretraining the paper starts from.
        """
        if clean_only:
            out = self.net.detect_train(self.net.shallow(light))
            terms = detection_terms(out, targets, self.priors1, self.priors2, self.multibox)
            if self.cfg.reflectance:  # the same logged columns in both phases
                terms.update({k: jt.zeros(()) for k in ("ref", "enh", "mutual")})
            return terms, {"input": light}
        if not self.cfg.reflectance:
            image = light if self.cfg.dsfd_input == "clean" else self.darken(light, rng)
            out = self.net.forward_train(image)
            return detection_terms(out, targets, self.priors1, self.priors2, self.multibox), {
                "input": image}
        dark = self.darken(light, rng)
        R_dark_gt, I_dark, R_light_gt, I_light = self.decompose(dark, light)
        out = self.net.forward_train(dark, light, I_dark, I_light,
                                     separate_streams=self.cfg.bn_streams == "separate")
        terms = detection_terms(out, targets, self.priors1, self.priors2, self.multibox)
        terms.update(dainet_terms(out, dark, light, R_dark_gt, R_light_gt, I_dark, I_light,
                                  self.cfg.losses))
        return terms, {"clean": light, "dark": dark, "R_dark": out["R_dark"], "R_light": out["R_light"]}


# The second word of the validation darkening's seed [seed, VALIDATION_STREAM, batch]: a
# stream apart from the training draws, seeded by (seed, iteration). Any constant would do;
# this one (a prime) fixes the committed sample metrics.
VALIDATION_STREAM = 7919


def validation_loss(net, batches: Iterable, step: StepLosses, seed: int) -> float:
    """Mean second-shot loss (loc2 + conf2) on darkened validation images (spec §9).

    ``batches`` is read one batch at a time (a dataset, a generator): memory holds one
    batch, not the validation set (the paper's 3,226 images at 640 px would be ~16 GB).
    The darkening of validation batch ``i`` is seeded by (seed, i): the same images every epoch.
    """
    net.eval()
    total, count = 0.0, 0
    with jt.no_grad():
        for i, (light, targets) in enumerate(batches):
            dark = step.darken(jt.array(light), np.random.default_rng([seed, VALIDATION_STREAM, i]))
            loc2, conf2, _ = net(dark, with_reflectance=False) if step.cfg.reflectance else net(dark)
            l, c = step.multibox(loc2, conf2, step.priors2, jt.array(targets))
            total += float((l + c).item()) * len(light)
            count += len(light)
    net.train()
    if count == 0:
        raise UserError("validation list holds no images")
    return total / count


def fingerprint(*parts) -> str:
    """Hash of everything a checkpoint's validity depends on (params, init weights)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


# Params `train` keys that do not change the optimisation path: how often to log, save
# pictures and checkpoints, where to run, how many loader processes (every sample is
# seeded by (seed, epoch, index) whatever the worker), and when to stop.
NOT_ON_PATH = ("device", "num_workers", "log_every", "image_every", "checkpoint_every",
               "max_iter", "max_epochs", "processes", "mpi_hostfile")   # the rank count enters as `world`
# Keys that only one lr schedule reads.
SCHEDULE_ONLY = {"step": ("lr_steps", "lr_gamma"), "cosine": ("lr_final_fraction",)}


def path_params(train: dict, total: int) -> dict:
    """The params `train` that decide the optimisation path up to any iteration: the resume key.

    Left out (:data:`NOT_ON_PATH`): a run may be resumed with other log, picture or
    checkpoint intervals, another device or worker count, and a raised ``max_iter`` /
    ``max_epochs`` continues it -- except under the ``cosine`` schedule, whose lr at every
    iteration depends on the total (:func:`~dainet.training.schedule.cosine_lr`): there the
    total enters the key as ``schedule_total``, so another total is another run. The
    ``step`` schedule does not depend on the total. Keys read only by the other schedule
    are left out too.
    """
    schedule = train.get("lr_schedule")
    other = [k for name, keys in SCHEDULE_ONLY.items() if name != schedule for k in keys]
    key = {k: v for k, v in train.items() if k not in NOT_ON_PATH and k not in other}
    if schedule == "cosine":
        key["schedule_total"] = int(total)
    return key


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


@dataclass
class LoopState:
    """Counters of the loop: bounded, whatever the number of iterations (the log rows
    themselves are in the run's history file, see :mod:`dainet.training.logging`)."""
    iteration: int = 0
    best_val: float = math.inf
    best_iteration: int = -1
    val_history: list = field(default_factory=list)  # (epoch, iteration, val_loss): one per epoch end
    log_rows: int = 0                # rows logged so far (the history rows this state covers)
    last_row: dict = field(default_factory=dict)     # the latest logged row (final_* metrics)
    images_per_s_sum: float = 0.0    # over the logged rows (the mean in the metrics)
    stopped_by: int | None = None    # the signal that ended this session early, if one did


RUN_NAME = re.compile(r"^[0-9a-f]{16}$")   # a run folder: the fingerprint
KEEP_RUNS = 4   # run folders kept below the checkpoints root (the current one and 3 more)


class Checkpoints:
    """The resumable state of one run, in ``<root>/<fingerprint>/``.

    ``last.ckpt`` (weights, optimiser buffers, loop counters) is written at every epoch
    end, every ``train.checkpoint_every`` iterations and when a signal stops the run;
    the one it replaces becomes ``prev.ckpt`` (the fallback when ``last.ckpt`` is found
    corrupt). Also there: ``iter_<n>.ckpt`` (weights at every ``checkpoint_every``, spec
    §9), ``best.ckpt`` (the best by validation loss) and ``history.jsonl`` (the logged
    rows). Runs of other params or weights have their own folders, so switching params
    back resumes the earlier run; the :data:`KEEP_RUNS` most recently used run folders
    are kept, older ones removed at the start of a run.
    """

    def __init__(self, root: str | Path, key: str):
        self.root, self.key = Path(root), key
        self.folder = self.root / key
        self.last, self.prev = self.folder / "last.ckpt", self.folder / "prev.ckpt"
        self.best, self.history = self.folder / "best.ckpt", self.folder / "history.jsonl"
        self.saved_at: int | None = None   # the iteration last.ckpt holds (None: none written or read)
        self.lock = RunLock(self.folder)

    def prepare(self) -> None:
        """At the start of the run (the writing process only): create and lock the run folder
        (:class:`~dainet.training.runstate.RunLock`: a UserError when another process trains
        it), drop temp files a killed writer left in it and the run folders beyond
        :data:`KEEP_RUNS` that no process is training."""
        self.lock.acquire_or_fail()
        for p in remove_stale_temps(self.folder):
            print(f"train: removed {p}, left by an interrupted write")
        os.utime(self.folder)   # most recently used
        runs = sorted((d for d in self.root.iterdir() if d.is_dir() and RUN_NAME.match(d.name)),
                      key=lambda d: d.stat().st_mtime, reverse=True)
        for old in [d for d in runs if d != self.folder][KEEP_RUNS - 1:]:
            if RunLock.is_held(old):   # a queued experiment training now
                continue
            shutil.rmtree(old, ignore_errors=True)
            print(f"train: removed {old}, the state of an older run (the {KEEP_RUNS} most recent runs are kept)")

    def _set_aside(self, path: Path, why: str) -> None:
        aside = path.with_suffix(".corrupt")
        os.replace(path, aside)
        print(f"train: {path} {why}; set aside as {aside}")

    def _read(self, path: Path, net, opt, average: WeightAverage | None = None) -> LoopState:
        """The state in ``path``, put into ``net`` and ``opt`` (``WeightError`` when unusable:
        nothing is changed then, every part being checked before anything is loaded)."""
        ck = load_checkpoint(path)
        if ck.get("fingerprint") != self.key:
            raise WeightError(f"{path}: holds the state of other params or weights")
        try:
            state = LoopState(**ck["loop"])
            model, optim = ck["model"], ck["optimizer"]
        except (KeyError, TypeError) as exc:
            raise WeightError(f"{path}: incomplete resumable state ({exc})") from None
        if average is not None:
            saved = ck.get("average")
            if not isinstance(saved, dict) or "arrays" not in saved:
                raise WeightError(f"{path}: holds no weight average")
            if saved["arrays"] is not None:   # checked before anything is loaded
                check_state_dict({k: tuple(v.shape) for k, v in net.state_dict().items()}, saved["arrays"],
                                 f"{path} (weight average)")
        load_into(net, model, str(path))   # checks every name and shape first
        load_optimizer_state(opt, optim, str(path))   # idem
        if average is not None:
            average.restore(ck["average"], str(path))
        state.stopped_by = None
        return state

    def load(self, net, opt, average: WeightAverage | None = None) -> LoopState | None:
        """The saved state of this run (``last.ckpt``, else ``prev.ckpt``), or None: start over;
        ``average`` (:class:`~dainet.training.ema.WeightAverage`) is restored with it."""
        tried = []
        for path in (self.last, self.prev):
            if not path.exists():
                continue
            try:
                state = self._read(path, net, opt, average)
            except WeightError as exc:
                self._set_aside(path, f"cannot be resumed ({str(exc).removeprefix(f'{path}: ')})")
                tried.append(path.name)
                continue
            self.saved_at = state.iteration
            print(f"train: resuming {path} at iteration {state.iteration}"
                  + (f" ({' and '.join(tried)} set aside)" if tried else ""))
            return state
        if tried:
            print(f"train: no usable resumable state in {self.folder} ({' and '.join(tried)} set aside "
                  "as *.corrupt); starting over")
        elif self.root.is_dir() and any(d.is_dir() and RUN_NAME.match(d.name) and d.name != self.key
                                        for d in self.root.iterdir()):   # rank 0 alone creates the root
            print(f"train: {self.root} holds only runs of other params or weights; starting over in {self.folder}")
        return None

    def save(self, net, opt, state: LoopState, periodic: bool, buffers: dict | None = None,
             average: WeightAverage | None = None) -> None:
        """Write ``last.ckpt`` (the previous one becomes ``prev.ckpt``); refuses non-finite weights.

        ``buffers`` (:func:`buffer_state`) replaces what the model holds besides its trained
        weights (BatchNorm statistics), when those were read earlier than the weights;
        ``average`` (:class:`~dainet.training.ema.WeightAverage`) is saved with the state."""
        arrays = {k: v.numpy() for k, v in net.state_dict().items()}
        if buffers is not None:
            arrays.update(buffers)
        bad = [k for k, a in arrays.items() if np.issubdtype(a.dtype, np.inexact) and not np.isfinite(a).all()]
        if bad:   # the loss was finite, the update was not
            raise TrainingDiverged(
                f"weights became non-finite in the step of iteration {state.iteration} ({len(bad)} "
                f"tensors, e.g. {bad[0]}; the loss was finite) and were not saved; {self.kept()}. "
                "Lower train.lr or check the data")
        self.folder.mkdir(parents=True, exist_ok=True)
        payload = {"fingerprint": self.key, "model": arrays, "optimizer": optimizer_state(opt),
                   "loop": asdict(state)}
        if average is not None:
            payload["average"] = average.state()
        if self.last.exists():
            os.replace(self.last, self.prev)
        save_checkpoint(self.last, payload)
        self.saved_at = state.iteration
        if periodic:
            save_checkpoint(self.folder / f"iter_{state.iteration:07d}.ckpt",
                            {"model": arrays, "iteration": state.iteration, "fingerprint": self.key})

    def kept(self) -> str:
        """What a diverged run leaves: the phrase for its message."""
        if self.saved_at is None or not self.last.exists():
            return "no checkpoint had been written yet"
        return f"the last good checkpoint {self.last} (iteration {self.saved_at}) is kept"


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


class StopSignals:
    """What asks the loop to stop at its next safe point (the current iteration completes,
    ``last.ckpt`` is written, the run ends: ``stopped_by``):

    - SIGTERM, SIGINT (Ctrl-C, to the process or its group): a second signal of either kind
      interrupts at once (SIGINT: ``KeyboardInterrupt``; SIGTERM: exit status 143);
    - with ``watch_parent``, the end of the process that started this one (``dvc repro``
      stopped by a SIGTERM of its own, as ``docker stop`` sends to PID 1, leaves its stage
      running as an orphan): seen at the next safe point, reported as SIGHUP (status 129).

    While installed, a child process that dies by a signal (a data worker hit by the same
    Ctrl-C) is left to Python: Jittor's own SIGCHLD handler would end this process at once,
    status 1, before the state is saved. Installed only from the main thread."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, watch_parent: bool = False):
        self.signum: int | None = None
        self._previous = {}
        self._parent = os.getppid() if watch_parent else None

    def _handle(self, signum, frame):
        if self.signum is None:
            self.signum = signum
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    def requested(self) -> int | None:
        """The signal that asks for a stop (None: go on)."""
        if self.signum is None and self._parent is not None and os.getppid() != self._parent:
            print(f"train: the process that started this one (pid {self._parent}) has ended; "
                  "saving the state and stopping", file=sys.stderr, flush=True)
            self.signum = signal.SIGHUP
        return self.signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
            self._previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}


def fit(net, opt, step: StepLosses, cfg: TrainConfig, train_batches: Callable[[int, int], tuple],
        iters_per_epoch: int, val_batches: Callable[[], Iterable], checkpoints: Checkpoints,
        logger, base_lr: float, is_main: bool = True, on_best: Callable[[], None] | None = None,
        stop_after: int | None = None, signals: StopSignals | None = None,
        average: WeightAverage | None = None) -> LoopState:
    """The training loop.

    ``train_batches(epoch, b)`` -> (images float32 [N, 3, S, S], targets [N, G, 5]) of batch
    ``b`` of ``epoch``; ``val_batches()`` -> an iterable of such pairs, read one at a time;
    ``logger`` has ``resume(n_rows, val_history)``, ``row(dict)``, ``images(iteration, dict)``,
    ``val(iteration, loss)`` and ``progress``; ``on_best`` saves the best model.
    ``stop_after`` ends the loop early after that iteration (tests of resuming);
    ``signals`` (:class:`StopSignals`) ends it after the iteration a signal arrived in,
    with ``state.stopped_by`` set. ``average`` (:class:`~dainet.training.ema.WeightAverage`,
    params ``train.ema_decay``) folds in the weights after every update; validation, the
    best model (``on_best`` is called with it swapped in) and the checkpoints then use it.
    """
    state = checkpoints.load(net, opt, average) or LoopState()
    total = total_iterations(cfg.max_iter, cfg.max_epochs, iters_per_epoch)
    if state.iteration > total:
        raise UserError(f"{checkpoints.last} is at iteration {state.iteration}, past this run's {total} "
                        f"(train.max_iter {cfg.max_iter}, train.max_epochs {cfg.max_epochs}); raise them, "
                        f"or move {checkpoints.folder} away to train from scratch")
    if is_main:
        found = logger.resume(state.log_rows, state.val_history)
        if found < state.log_rows:
            print(f"train: {checkpoints.history} holds {found} of the {state.log_rows} logged rows; "
                  "the curves miss the others")
    bar = logger.progress(total=total, initial=state.iteration)
    window_t, window_n = time.perf_counter(), 0
    held = None   # a signal came: the buffers to save at the top of the next iteration
    while state.iteration < total:
        it = state.iteration
        epoch, b = divmod(it, iters_per_epoch)
        images, targets = train_batches(epoch, b)
        lr = scheduled_lr(cfg.lr_schedule, base_lr, it, total, list(cfg.lr_steps), cfg.lr_gamma,
                          cfg.warmup_iters, cfg.lr_final_fraction)
        set_lr(opt, lr)
        terms, pictures = step(jt.array(images), jt.array(targets), np.random.default_rng([cfg.seed, it]),
                               clean_only=it < cfg.clean_warmup_iters)
        # What opt.backward() runs first: the previous update, with this forward pending. Done
        # here, a stop saves the weights as an uninterrupted run computes them: Jittor's float32
        # rounding depends on where its lazy graph is cut (saving at the end of the iteration
        # instead changes the low bits of later steps, measured) -- and also on its allocator's
        # history (memory alignment), so a resumed run is bit-identical in the tested cases and
        # otherwise equal to float32 rounding.
        jt.sync(trained_weights(opt))
        if average is not None:
            average.fold(net, it)   # the weights after update `it` (a no-op before the first)
        if held is not None:
            if is_main:
                checkpoints.save(net, opt, state, periodic=False, buffers=held, average=average)
            state.stopped_by = signals.signum
            break
        loss = total_loss(terms)
        opt.backward(loss)
        clip_grad_norm(opt, cfg.clip_grad_norm)
        opt.step()
        # Jittor is lazy: the lines above only build the update; it runs when the weights are
        # next read. The loss is read here, before that, so a non-finite loss stops the run
        # with the update never applied (reading it before opt.step(), or reading the gradient
        # norm, cuts the graph differently and changes the float32 rounding of the sample's
        # later steps, measured). A finite loss whose update is not finite (e.g. 0 * inf in a gradient,
        # an lr overflowing float32) is caught where the weights are read: by the next
        # iteration's loss, and by Checkpoints.save, which never writes them.
        values = {k: float(v.item()) for k, v in terms.items()}
        values["total"] = float(sum(values.values()))
        check_finite(values, it + 1, checkpoints)
        state.iteration = it + 1
        window_n += len(images)
        bar.update(1)
        bar.set_postfix(loss=f"{values['total']:.3f}", lr=f"{lr:.2e}")
        if state.iteration % cfg.log_every == 0 or state.iteration == total:
            now = time.perf_counter()
            row = {"iteration": state.iteration, "epoch": epoch, **values, "lr": lr,
                   "images_per_s": window_n / max(now - window_t, 1e-9)}
            window_t, window_n = now, 0
            state.log_rows += 1
            state.last_row = row
            state.images_per_s_sum += row["images_per_s"]
            if is_main:
                logger.row(row)
        if is_main and cfg.image_every > 0 and state.iteration % cfg.image_every == 0:
            logger.images(state.iteration, pictures)
        epoch_end = state.iteration % iters_per_epoch == 0 or state.iteration == total
        periodic = state.iteration % cfg.checkpoint_every == 0
        saved = periodic or epoch_end or state.iteration == total
        if average is not None and saved:   # the update of this iteration, before it is used
            jt.sync(trained_weights(opt))
            average.fold(net, state.iteration)
        if epoch_end:
            with average.swapped_in(net) if average is not None else nullcontext():
                val = validation_loss(net, val_batches(), step, cfg.seed)
                state.val_history.append((epoch, state.iteration, val))
                if is_main:
                    logger.val(state.iteration, val)
                if val < state.best_val:
                    state.best_val, state.best_iteration = val, state.iteration
                    if is_main and on_best is not None:
                        on_best()
        if is_main and saved:
            checkpoints.save(net, opt, state, periodic, average=average)
        if signals is not None and signals.requested() is not None and state.iteration < total:
            if saved:   # this iteration's checkpoint is the one to resume from
                state.stopped_by = signals.signum
                break
            held = buffer_state(net, opt)   # the weights follow at the top of the next iteration
        if stop_after is not None and state.iteration >= stop_after and held is None:
            break
    bar.close()
    return state
