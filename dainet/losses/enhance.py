"""DAI-Net's reflectance terms (spec §9): loss_enh (self-supervised Retinex) and loss_ref (pseudo GT).

All maps are [N, C, H, W]: images and reflectances C = 3, illuminations C = 1 (broadcast
over RGB). ``sg`` of the spec is ``.detach()``.
"""
from __future__ import annotations

from dainet.jt import jt

from dainet.losses.retinex import l1, smooth
from dainet.losses.ssim import ssim
from dainet.utils.numerics import mean64


def mse(a: jt.Var, b: jt.Var) -> jt.Var:
    """Mean squared error (accumulated in float64)."""
    return mean64((a - b).sqr())


def enhancement_loss(R_dark: jt.Var, R_light: jt.Var, R_dark_2: jt.Var, R_light_2: jt.Var,
                     I_dark: jt.Var, I_light: jt.Var, dark: jt.Var, light: jt.Var,
                     weight: float = 0.1, w_equal_r: float = 0.01, w_smooth: float = 0.5,
                     w_redecomp: float = 0.001, smooth_edge: float = 10.0,
                     ssim_window: int = 11, ssim_sigma: float = 1.5,
                     ssim_crop_border: bool = True) -> jt.Var:
    """loss_enh = weight * [w_equal_r mse(R_dark, sg R_light) + recon(dark) + recon(light)
    + w_smooth (smooth(I_dark, R_dark) + smooth(I_light, R_light))
    + w_redecomp (mse(R_dark_2, sg R_dark) + mse(R_light_2, sg R_light))],
    recon(x) = mse(R_x I_x, x) + 1 - ssim(R_x I_x, x).

    params: ``train.w_enh``, ``w_enh_equal_r``, ``w_enh_smooth``, ``w_enh_redecomp``,
    ``ssim_window``, ``ssim_sigma``, ``ssim_crop_border``. I_* are the frozen decomposer's and get no gradient.
    """
    I_dark, I_light = I_dark.detach(), I_light.detach()

    def recon(R, I, image):
        rec = R * I
        return mse(rec, image) + (1.0 - ssim(rec, image, ssim_window, ssim_sigma,
                                             crop_border=ssim_crop_border))

    total = (w_equal_r * mse(R_dark, R_light.detach())
             + recon(R_dark, I_dark, dark) + recon(R_light, I_light, light)
             + w_smooth * (smooth(I_dark, R_dark, smooth_edge) + smooth(I_light, R_light, smooth_edge))
             + w_redecomp * (mse(R_dark_2, R_dark.detach()) + mse(R_light_2, R_light.detach())))
    return weight * total


def reflectance_loss(R_dark: jt.Var, R_light: jt.Var, R_dark_gt: jt.Var, R_light_gt: jt.Var,
                     ssim_window: int = 11, ssim_sigma: float = 1.5,
                     ssim_crop_border: bool = True) -> jt.Var:
    """loss_ref = sum over {dark, light} of |R - sg R_gt|_1 + 1 - ssim(R, sg R_gt) (R_gt: frozen decomposer)."""
    total = 0.0
    for R, gt in ((R_dark, R_dark_gt.detach()), (R_light, R_light_gt.detach())):
        total = total + l1(R, gt) + (1.0 - ssim(R, gt, ssim_window, ssim_sigma,
                                                crop_border=ssim_crop_border))
    return total
