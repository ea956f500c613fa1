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
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import jittor as jt
import numpy as np

from dainet.boxes.priors import make_priors
from dainet.data.darkisp import DarkISPConfig, darken_batch
from dainet.errors import UserError
from dainet.losses.multibox import MultiBoxLoss
from dainet.params import Section
from dainet.training.objective import LossWeights, dainet_terms, detection_terms, total_loss
from dainet.training.optim import OPTIMIZERS, load_optimizer_state, optimizer_state, set_lr
from dainet.training.schedule import scheduled_lr, total_iterations
from dainet.weights.checkpoint import load_checkpoint, save_checkpoint


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class TrainConfig:
    """Params section `train` (plus the crop size from `augment`)."""
    method: str = "dainet"
    dsfd_input: str = "dark"
    device: str = "auto"
    seed: int = 0
    batch_size: int = 4
    num_workers: int = 0
    optimizer: str = "sgd"
    lr: float = 5e-4
    lr_reference_batch: int = 4
    ref_lr_mult: float = 0.1
    train_l2norm: bool = False
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_steps: tuple = (20000, 25000, 30000)
    lr_gamma: float = 0.1
    warmup_iters: int = 0
    lr_schedule: str = "step"
    lr_final_fraction: float = 0.0
    clean_warmup_iters: int = 0
    max_iter: int = 150000
    max_epochs: int = 100
    clip_grad_norm: float = 35.0
    match_iou: float = 0.35
    neg_pos_ratio: int = 3
    smooth_l1_beta: float = 1.0
    checkpoint_every: int = 5000
    log_every: int = 10
    image_every: int = 100
    image_size: int = 640
    losses: LossWeights = field(default_factory=LossWeights)

    @classmethod
    def from_params(cls, s: Section, augment: Section) -> "TrainConfig":
        return cls(method=s.choice("method", ("dainet", "dsfd")),
                   dsfd_input=s.choice("dsfd_input", ("dark", "clean")),
                   device=s.choice("device", ("auto", "cpu", "cuda")),
                   seed=s.int("seed"), batch_size=s.int("batch_size"), num_workers=s.int("num_workers"),
                   optimizer=s.choice("optimizer", OPTIMIZERS), lr=s.float("lr"), lr_reference_batch=s.int("lr_reference_batch"),
                   ref_lr_mult=s.float("ref_lr_mult"), train_l2norm=s.bool("train_l2norm"),
                   momentum=s.float("momentum"),
                   weight_decay=s.float("weight_decay"), lr_steps=tuple(s.list("lr_steps", int)),
                   lr_gamma=s.float("lr_gamma"), warmup_iters=s.int("warmup_iters"),
                   lr_schedule=s.choice("lr_schedule", ("step", "cosine")),
                   lr_final_fraction=s.float("lr_final_fraction"),
                   clean_warmup_iters=s.int("clean_warmup_iters"), max_iter=s.int("max_iter"),
                   max_epochs=s.int("max_epochs"), clip_grad_norm=s.float("clip_grad_norm"),
                   match_iou=s.float("match_iou"), neg_pos_ratio=s.int("neg_pos_ratio"),
                   smooth_l1_beta=s.float("smooth_l1_beta"),
                   checkpoint_every=s.int("checkpoint_every"), log_every=s.int("log_every"),
                   image_every=s.int("image_every"), image_size=augment.int("image_size"),
                   losses=LossWeights.from_params(s))

    @property
    def reflectance(self) -> bool:
        return self.method == "dainet"


def use_device(device: str) -> str:
    """Select CUDA when asked for (or, with ``auto``, when Jittor found a usable GPU)."""
    if device == "cuda" and not jt.has_cuda:
        raise UserError("params train.device is 'cuda' but no usable GPU was found "
                        "(python -m dainet doctor)")
    jt.flags.use_cuda = int(device == "cuda" or (device == "auto" and bool(jt.has_cuda)))
    return "cuda" if jt.flags.use_cuda else "cpu"


class StepLosses:
    """Forward + objective of one training batch, for DAI-Net or the DSFD baseline.

    ``light`` [N, 3, S, S] clean images in [0, 1], ``targets`` [N, G, 5] normalised xyxy +
    label (padding label -1). DarkISP darkens the batch; the frozen decomposer gives
    I and the reflectance targets of both images in one no-grad pass.
    """

    def __init__(self, net, decomposer, cfg: TrainConfig, darkisp: DarkISPConfig, priors_section: Section):
        self.net, self.decomposer, self.cfg, self.darkisp = net, decomposer, cfg, darkisp
        variances = priors_section.list("variances", float, 2)
        self.multibox = MultiBoxLoss(cfg.match_iou, cfg.neg_pos_ratio, variances, cfg.smooth_l1_beta)
        hw = (cfg.image_size, cfg.image_size)
        steps = priors_section.list("steps", int)
        clip = priors_section.bool("clip")
        # priors depend only on the crop size: made once, reused every step
        self.priors1 = jt.array(make_priors(hw, steps, priors_section.list("sizes_shot1", int), clip)).stop_grad()
        self.priors2 = jt.array(make_priors(hw, steps, priors_section.list("sizes_shot2", int), clip)).stop_grad()

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
        out = self.net.forward_train(dark, light, I_dark, I_light)
        terms = detection_terms(out, targets, self.priors1, self.priors2, self.multibox)
        terms.update(dainet_terms(out, dark, light, R_dark_gt, R_light_gt, I_dark, I_light,
                                  self.cfg.losses))
        return terms, {"clean": light, "dark": dark, "R_dark": out["R_dark"], "R_light": out["R_light"]}


def validation_loss(net, batches, step: StepLosses, seed: int) -> float:
    """Mean second-shot loss (loc2 + conf2) on darkened validation images (spec §9).

    The darkening of validation batch ``i`` is seeded by (seed, i): the same images every epoch.
    """
    net.eval()
    total, count = 0.0, 0
    with jt.no_grad():
        for i, (light, targets) in enumerate(batches):
            dark = step.darken(jt.array(light), np.random.default_rng([seed, 7919, i]))
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


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


@dataclass
class LoopState:
    iteration: int = 0
    best_val: float = math.inf
    best_iteration: int = -1
    history: list = field(default_factory=list)      # logged rows (dicts), replayed on resume
    val_history: list = field(default_factory=list)  # (epoch, iteration, val_loss)


class Checkpoints:
    """``last.ckpt`` (resumable: weights, momentum, counters, log history) + periodic copies."""

    def __init__(self, folder: str | Path, key: str):
        self.folder, self.key = Path(folder), key
        self.last = self.folder / "last.ckpt"

    def load(self, net, opt) -> LoopState | None:
        """The saved state when it belongs to this run's params, else None (start over)."""
        if not self.last.exists():
            return None
        ck = load_checkpoint(self.last)
        if ck.get("fingerprint") != self.key:
            print(f"train: {self.last} was written with other params or weights; starting over")
            return None
        from dainet.weights.checkpoint import load_into
        load_into(net, ck["model"], str(self.last))
        load_optimizer_state(opt, ck["optimizer"], str(self.last))
        return LoopState(**ck["loop"])

    def save(self, net, opt, state: LoopState, periodic: bool) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        payload = {"fingerprint": self.key, "model": net.state_dict(), "optimizer": optimizer_state(opt),
                   "loop": asdict(state)}
        save_checkpoint(self.last, payload)
        if periodic:
            save_checkpoint(self.folder / f"iter_{state.iteration:07d}.ckpt",
                            {"model": payload["model"], "iteration": state.iteration})


def check_finite(values: dict[str, float], iteration: int, last_ckpt: Path) -> None:
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        kept = f"the last good checkpoint {last_ckpt} is kept" if last_ckpt.exists() else \
            "no checkpoint had been written yet"
        raise TrainingDiverged(
            f"loss became non-finite at iteration {iteration} ({', '.join(f'{k}={v}' for k, v in bad.items())}); "
            f"{kept}. Lower train.lr or check the data")


def fit(net, opt, step: StepLosses, cfg: TrainConfig, train_batches: Callable[[int, int], tuple],
        iters_per_epoch: int, val_batches: Callable[[], list], checkpoints: Checkpoints,
        logger, base_lr: float, is_main: bool = True, on_best: Callable[[], None] | None = None,
        stop_after: int | None = None) -> LoopState:
    """The training loop.

    ``train_batches(epoch, b)`` -> (images float32 [N, 3, S, S], targets [N, G, 5]) of batch
    ``b`` of ``epoch``; ``val_batches()`` -> list of such pairs; ``logger`` has
    ``row(dict)``, ``images(iteration, dict)`` and ``progress``; ``on_best`` saves the best
    model. ``stop_after`` ends the loop early after that iteration (tests of resuming).
    """
    state = checkpoints.load(net, opt) or LoopState()
    total = total_iterations(cfg.max_iter, cfg.max_epochs, iters_per_epoch)
    logger.replay(state.history)
    bar = logger.progress(total=total, initial=state.iteration)
    window_t, window_n, last_vals = time.perf_counter(), 0, {}
    while state.iteration < total:
        it = state.iteration
        epoch, b = divmod(it, iters_per_epoch)
        images, targets = train_batches(epoch, b)
        lr = scheduled_lr(cfg.lr_schedule, base_lr, it, total, list(cfg.lr_steps), cfg.lr_gamma,
                          cfg.warmup_iters, cfg.lr_final_fraction)
        set_lr(opt, lr)
        terms, pictures = step(jt.array(images), jt.array(targets), np.random.default_rng([cfg.seed, it]),
                               clean_only=it < cfg.clean_warmup_iters)
        loss = total_loss(terms)
        opt.backward(loss)
        opt.clip_grad_norm(cfg.clip_grad_norm, 2)
        opt.step()
        values = {k: float(v.item()) for k, v in terms.items()}
        values["total"] = float(sum(values.values()))
        check_finite(values, it, checkpoints.last)
        state.iteration = it + 1
        window_n += len(images)
        bar.update(1)
        bar.set_postfix(loss=f"{values['total']:.3f}", lr=f"{lr:.2e}")
        last_vals = values
        if state.iteration % cfg.log_every == 0 or state.iteration == total:
            now = time.perf_counter()
            row = {"iteration": state.iteration, "epoch": epoch, **values, "lr": lr,
                   "images_per_s": window_n / max(now - window_t, 1e-9)}
            window_t, window_n = now, 0
            state.history.append(row)
            if is_main:
                logger.row(row)
        if is_main and cfg.image_every > 0 and state.iteration % cfg.image_every == 0:
            logger.images(state.iteration, pictures)
        epoch_end = state.iteration % iters_per_epoch == 0 or state.iteration == total
        if epoch_end:
            val = validation_loss(net, val_batches(), step, cfg.seed)
            state.val_history.append((epoch, state.iteration, val))
            if is_main:
                logger.val(state.iteration, val)
            if val < state.best_val:
                state.best_val, state.best_iteration = val, state.iteration
                if is_main and on_best is not None:
                    on_best()
        periodic = state.iteration % cfg.checkpoint_every == 0
        if is_main and (periodic or epoch_end or state.iteration == total):
            checkpoints.save(net, opt, state, periodic)
        if stop_after is not None and state.iteration >= stop_after:
            break
    bar.close()
    state.last_values = last_vals
    return state
