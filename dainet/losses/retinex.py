"""Retinex terms (spec §6): the illumination smoothness prior and the DecomNet training loss.

``smooth`` reproduces RetinexNet's definition exactly, including its sizes: the 2x2
difference kernels with padding 1 give (H+1) x (W+1) maps whose last row (x) / column (y)
is zero, the 3x3 box average (stride 1, zero padding 1, divisor 9 everywhere) keeps that
size, and the mean runs over all (H+1)(W+1) positions.
"""
from __future__ import annotations

from dainet.jt import jt

from dainet.utils.numerics import mean64

# ITU-R BT.601 luma weights: the reference's grey version of R in the smoothness term
LUMA_BT601 = (0.299, 0.587, 0.114)


def abs_gradient(x: jt.Var, direction: str) -> jt.Var:
    """|x correlated with [[0, 0], [-1, 1]]| (x) or its transpose (y), zero padding 1.

    [N, C, H, W] -> [N, C, H+1, W+1]; out[i, j] = |x[i, j] - x[i, j-1]| (x) or
    |x[i, j] - x[i-1, j]| (y), with x = 0 outside the image.
    """
    n, c, h, w = x.shape
    xp = x.reindex([n, c, h + 2, w + 2], ["i0", "i1", "i2-1", "i3-1"], overflow_value=0.0)
    if direction == "x":
        d = xp[:, :, 1:, 1:] - xp[:, :, 1:, :-1]
    elif direction == "y":
        d = xp[:, :, 1:, 1:] - xp[:, :, :-1, 1:]
    else:
        raise ValueError(f"direction must be 'x' or 'y', got {direction!r}")
    return d.abs()


def box_average3(x: jt.Var) -> jt.Var:
    """3x3 mean, stride 1, zero padding 1, padded cells counted (PyTorch avg_pool2d defaults)."""
    n, c, h, w = x.shape
    xp = x.reindex([n, c, h + 2, w + 2], ["i0", "i1", "i2-1", "i3-1"], overflow_value=0.0)
    rows = xp[:, :, :-2] + xp[:, :, 1:-1] + xp[:, :, 2:]
    return (rows[:, :, :, :-2] + rows[:, :, :, 1:-1] + rows[:, :, :, 2:]) / 9.0


def smooth(I: jt.Var, R: jt.Var, edge: float = 10.0, luma: tuple = LUMA_BT601) -> jt.Var:
    """Structure-aware smoothness of the illumination I [N, 1, H, W] given R [N, 3, H, W].

    mean(|dx I| * exp(-edge * avg3(|dx Rg|)) + |dy I| * exp(-edge * avg3(|dy Rg|))),
    Rg the luma of R: illumination may change only where the reflectance has edges.
    """
    grey = (R[:, 0:1] * luma[0] + R[:, 1:2] * luma[1] + R[:, 2:3] * luma[2])
    terms = [abs_gradient(I, d) * jt.exp(-edge * box_average3(abs_gradient(grey, d))) for d in ("x", "y")]
    return mean64(terms[0] + terms[1])


def l1(a: jt.Var, b: jt.Var) -> jt.Var:
    """Mean absolute error."""
    return mean64((a - b).abs())


def decomposition_loss(R_low: jt.Var, I_low: jt.Var, R_high: jt.Var, I_high: jt.Var,
                       low: jt.Var, high: jt.Var, w_mutual: float = 0.001, w_smooth: float = 0.1,
                       w_equal_r: float = 0.01, smooth_edge: float = 10.0) -> jt.Var:
    """RetinexNet's DecomNet loss on a (low, high) pair (spec §6); I [N, 1, H, W] broadcasts over RGB.

    Reconstructions of each image from its own (R, I), cross reconstructions with the
    other image's R (``w_mutual``), smoothness of both I (``w_smooth``) and R_low pulled to
    a stopped R_high (``w_equal_r``).
    """
    return (l1(R_low * I_low, low) + l1(R_high * I_high, high)
            + w_mutual * (l1(R_high * I_low, low) + l1(R_low * I_high, high))
            + w_smooth * (smooth(I_low, R_low, smooth_edge) + smooth(I_high, R_high, smooth_edge))
            + w_equal_r * l1(R_low, R_high.detach()))
