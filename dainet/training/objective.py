"""The DAI-Net training objective of spec §9, assembled from the loss modules.

Total = loc1 + conf1 + loc2 + conf2 + loss_ref + loss_enh + loss_mutual (DAI-Net);
loc1 + conf1 + loc2 + conf2 (DSFD baseline).
"""
from __future__ import annotations

from dataclasses import dataclass

import jittor as jt

from dainet.losses.enhance import enhancement_loss, reflectance_loss
from dainet.losses.multibox import MultiBoxLoss
from dainet.losses.mutual import mutual_loss
from dainet.params import Section


@dataclass(frozen=True)
class LossWeights:
    """Weights and constants of the enhancement, reflectance and mutual terms (params `train`)."""
    w_enh: float = 0.1
    w_enh_equal_r: float = 0.01
    w_enh_smooth: float = 0.5
    w_enh_redecomp: float = 0.001
    w_mutual: float = 0.1
    kl_temperature: float = 4.0
    ssim_window: int = 11
    ssim_sigma: float = 1.5
    ssim_crop_border: bool = True   # True: torchmetrics <= 1.4.1 (the reference's era); False: >= 1.4.2
    smooth_edge: float = 10.0

    @classmethod
    def from_params(cls, s: Section) -> "LossWeights":
        return cls(w_enh=s.float("w_enh"), w_enh_equal_r=s.float("w_enh_equal_r"),
                   w_enh_smooth=s.float("w_enh_smooth"), w_enh_redecomp=s.float("w_enh_redecomp"),
                   w_mutual=s.float("w_mutual"), kl_temperature=s.float("kl_temperature"),
                   ssim_window=s.int("ssim_window"), ssim_sigma=s.float("ssim_sigma"),
                   ssim_crop_border=s.bool("ssim_crop_border"), smooth_edge=s.float("smooth_edge"))


def detection_terms(out: dict, targets: jt.Var, priors1: jt.Var, priors2: jt.Var,
                    multibox: MultiBoxLoss) -> dict[str, jt.Var]:
    """Multibox loss of both shots: loc1, conf1 (first shot, small anchors), loc2, conf2."""
    loc1, conf1 = multibox(out["loc1"], out["conf1"], priors1, targets)
    loc2, conf2 = multibox(out["loc2"], out["conf2"], priors2, targets)
    return {"loc1": loc1, "conf1": conf1, "loc2": loc2, "conf2": conf2}


def dainet_terms(out: dict, dark: jt.Var, light: jt.Var, R_dark_gt: jt.Var, R_light_gt: jt.Var,
                 I_dark: jt.Var, I_light: jt.Var, w: LossWeights) -> dict[str, jt.Var]:
    """The three DAI-Net terms: reflectance (vs the frozen decomposer), enhancement, mutual."""
    ref = reflectance_loss(out["R_dark"], out["R_light"], R_dark_gt, R_light_gt,
                           w.ssim_window, w.ssim_sigma, ssim_crop_border=w.ssim_crop_border)
    enh = enhancement_loss(out["R_dark"], out["R_light"], out["R_dark_2"], out["R_light_2"],
                           I_dark, I_light, dark, light, weight=w.w_enh, w_equal_r=w.w_enh_equal_r,
                           w_smooth=w.w_enh_smooth, w_redecomp=w.w_enh_redecomp,
                           smooth_edge=w.smooth_edge, ssim_window=w.ssim_window,
                           ssim_sigma=w.ssim_sigma, ssim_crop_border=w.ssim_crop_border)
    mutual = mutual_loss(out["g_light"], out["g_dark"], out["g_light2"], out["g_dark2"],
                         weight=w.w_mutual, T=w.kl_temperature)
    return {"ref": ref, "enh": enh, "mutual": mutual}


def total_loss(terms: dict[str, jt.Var]) -> jt.Var:
    """Plain sum: every weight is already inside its term."""
    total = None
    for v in terms.values():
        total = v if total is None else total + v
    return total
