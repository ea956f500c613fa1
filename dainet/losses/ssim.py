"""SSIM as the reference computes it: torchmetrics' ``structural_similarity_index_measure`` defaults (spec §9).

- data range L = max(a.max - a.min, b.max - b.min) over the whole batch (differentiable,
  as in torchmetrics); C1 = (k1 L)^2, C2 = (k2 L)^2;
- Gaussian window (``window`` taps, ``sigma``) per channel, applied as two separable 1-D
  passes; both inputs reflect-padded by (window-1)/2 and filtered without padding, so the
  statistics maps keep the input size. Each pass is one matrix product with a banded
  [n, n] matrix that has the reflect padding folded in: the same numbers as pad + depthwise
  conv, but its backward is a matmul too (Jittor's depthwise-conv backward on the CPU was
  ~15x slower than the forward and dominated the training step);
- variances clamped at 0;
- the SSIM map is averaged over channels and pixels per image (in float64), then over
  the batch. Which pixels is a torchmetrics-version convention (the reference pins no
  version; params ``train.ssim_crop_border``): ``crop_border=True`` crops (window-1)/2
  pixels from every side first, the border whose statistics saw the reflected padding,
  as torchmetrics <= 1.4.1 does (1.2-1.3 were current when the paper's code was written;
  0.11.4 is the last release for its Python 3.7; the parity fixture used 1.2.1); ``False`` averages the full map, as
  torchmetrics >= 1.4.2 does.
"""
from __future__ import annotations

import functools

from dainet.jt import jt
import numpy as np

from dainet.utils.numerics import mean64


def gaussian_taps(window: int, sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian [window], centred (torchmetrics' ``_gaussian``)."""
    x = np.arange(window, dtype=np.float64) - (window - 1) / 2.0
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).astype(np.float32)


@functools.lru_cache(maxsize=32)
def reflect_filter_matrix(n: int, window: int, sigma: float) -> np.ndarray:
    """[n, n] matrix M with (M @ x) = valid Gaussian filtering of reflect-padded x (length n)."""
    pad = (window - 1) // 2
    if n <= pad:
        raise ValueError(f"ssim: a side of {n} px is too small for reflect padding by {pad}")
    taps = gaussian_taps(window, sigma).astype(np.float64)
    rows = np.repeat(np.arange(n), window)
    src = (np.arange(n)[:, None] + np.arange(window)[None, :] - pad).ravel()
    src = np.abs(src)                                   # reflect at the start (no edge repeat)
    src = np.where(src > n - 1, 2 * (n - 1) - src, src)  # reflect at the end
    m = np.zeros((n, n))
    np.add.at(m, (rows, src), np.tile(taps, n))
    return m.astype(np.float32)


def gaussian_filter_reflect(x: jt.Var, window: int, sigma: float) -> jt.Var:
    """Separable Gaussian of every plane of [..., H, W] with reflect padding: same shape."""
    *lead, h, w = x.shape
    mh = jt.array(reflect_filter_matrix(h, window, sigma)).stop_grad()
    mw = jt.array(reflect_filter_matrix(w, window, sigma)).stop_grad()
    y = jt.matmul(x.reshape(-1, w), mw.transpose(1, 0))                     # along W
    y = y.reshape(-1, h, w).transpose(0, 2, 1).reshape(-1, h)
    y = jt.matmul(y, mh.transpose(1, 0))                                   # along H
    return y.reshape(-1, w, h).transpose(0, 2, 1).reshape(*lead, h, w)


def ssim(a: jt.Var, b: jt.Var, window: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03, crop_border: bool = True) -> jt.Var:
    """Mean SSIM of two [N, C, H, W] batches (a scalar); H, W > window // 2 (reflect padding).

    ``crop_border``: drop (window-1)/2 pixels on every side of the SSIM map before the
    mean (torchmetrics <= 1.4.1) or average the full map (>= 1.4.2).
    """
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"ssim: shapes differ: {a.shape} vs {b.shape}")
    if min(a.shape[2:]) < window:
        raise ValueError(f"ssim: images {tuple(a.shape[2:])} smaller than the {window}-tap window")
    pad = (window - 1) // 2
    n = a.shape[0]
    data_range = jt.maximum(a.max() - a.min(), b.max() - b.min())
    c1 = (k1 * data_range).sqr()
    c2 = (k2 * data_range).sqr()

    # the five local statistics in one filtering pass
    stats = gaussian_filter_reflect(jt.concat([a, b, a * a, b * b, a * b], dim=0), window, sigma)
    mu_a, mu_b, e_aa, e_bb, e_ab = (stats[i * n:(i + 1) * n] for i in range(5))
    mu_aa, mu_bb, mu_ab = mu_a * mu_a, mu_b * mu_b, mu_a * mu_b
    var_a = jt.maximum(e_aa - mu_aa, 0.0)
    var_b = jt.maximum(e_bb - mu_bb, 0.0)
    cov = e_ab - mu_ab

    ssim_map = ((2 * mu_ab + c1) * (2 * cov + c2)) / ((mu_aa + mu_bb + c1) * (var_a + var_b + c2))
    if crop_border:
        h, w = ssim_map.shape[2:]
        ssim_map = ssim_map[:, :, pad:h - pad, pad:w - pad]
    return mean64(ssim_map)  # every image has the same pixel count: the mean of per-image means
