"""One training step of DAI-Net (spec §9) or the DSFD baseline, and the validation loss.

The step is the forward pass and the objective of one batch (:class:`StepLosses`); the
backward pass, clipping and the update are the loop's (:mod:`dainet.training.loop`).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from dainet.jt import jt
from dainet.boxes.priors import PriorSpec
from dainet.data.darkisp import DarkISPConfig, darken_batch
from dainet.errors import UserError
from dainet.losses.multibox import MultiBoxLoss
from dainet.training.config import TrainConfig
from dainet.training.objective import dainet_terms, detection_terms


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
