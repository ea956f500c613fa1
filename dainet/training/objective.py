"""The DAI-Net training objective of spec §9, assembled from the loss modules.

Total = loc1 + conf1 + loc2 + conf2 + loss_ref + loss_enh + loss_mutual (DAI-Net);
loc1 + conf1 + loc2 + conf2 (DSFD baseline).
"""
from __future__ import annotations

from dataclasses import dataclass

from dainet.jt import jt

from dainet.losses.enhance import enhancement_loss, reflectance_loss
from dainet.losses.multibox import MultiBoxLoss
from dainet.losses.mutual import mutual_loss


@dataclass(frozen=True)
class LossWeights:
    """Weights and constants of the enhancement, reflectance and mutual terms (params `train`)."""
    w_enh: float
    w_enh_equal_r: float
    w_enh_smooth: float
    w_enh_redecomp: float
    w_mutual: float
    kl_temperature: float
    ssim_window: int
    ssim_sigma: float
    ssim_crop_border: bool   # True: torchmetrics <= 1.4.1 (the reference's era); False: >= 1.4.2
    smooth_edge: float


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
