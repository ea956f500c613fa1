"""Intersection over union of xyxy boxes: one formula, two conventions, two array backends.

* continuous coordinates (default): ``w = x2 - x1`` -- the detector's NMS and the
  prior matching (spec §9, §10);
* ``plus1``: ``w = x2 - x1 + 1`` and intersection width ``min(x2) - max(x1) + 1`` -- the
  pixel convention of the official WIDER FACE / DARK FACE evaluation (its
  ``boxoverlap``, spec §12) and of the reference box voting (spec §10).

Intersections of negative width or height count as 0, so do pairs whose union is 0
(two degenerate boxes: IoU 0, not NaN). With ``plus1`` a positive intersection
implies both boxes have a positive area, so the union is at least the larger area.

:func:`iou_xyxy_np` (numpy) and :func:`iou_xyxy` (Jittor, imported lazily so the
numpy users -- evaluation, voting, NMS -- never load Jittor) run the same
:func:`_pairwise_iou`.
"""
from __future__ import annotations

import numpy as np

# Two degenerate (zero-area) boxes have union 0; their IoU is 0, not NaN.
_MIN_UNION = 1e-12


def _pairwise_iou(a, b, plus1: bool, minimum, maximum, clip0, floor_union):
    """IoU of already broadcast ``a [..., A, 1, 4]`` and ``b [..., 1, B, 4]``, written once
    for both backends (``minimum``, ``maximum``, ``clip0(x) = max(x, 0)``,
    ``floor_union(u) = max(u, _MIN_UNION)``)."""
    def extent(hi, lo):
        return hi - lo + 1 if plus1 else hi - lo

    iw = clip0(extent(minimum(a[..., 2], b[..., 2]), maximum(a[..., 0], b[..., 0])))
    ih = clip0(extent(minimum(a[..., 3], b[..., 3]), maximum(a[..., 1], b[..., 1])))
    inter = iw * ih
    area_a = extent(a[..., 2], a[..., 0]) * extent(a[..., 3], a[..., 1])
    area_b = extent(b[..., 2], b[..., 0]) * extent(b[..., 3], b[..., 1])
    return inter / floor_union(area_a + area_b - inter)


def iou_xyxy_np(a: np.ndarray, b: np.ndarray, plus1: bool = False) -> np.ndarray:
    """IoU of every pair: ``a [..., A, 4]`` x ``b [..., B, 4]`` (xyxy) -> ``[..., A, B]`` (numpy)."""
    a, b = np.asarray(a), np.asarray(b)
    return _pairwise_iou(a[..., :, None, :], b[..., None, :, :], plus1, np.minimum, np.maximum,
                         lambda x: np.clip(x, 0, None), lambda u: np.maximum(u, _MIN_UNION))


def iou_xyxy(a, b, plus1: bool = False):
    """Jittor twin of :func:`iou_xyxy_np`: ``a [..., A, 4]`` x ``b [..., B, 4]`` -> ``[..., A, B]``.

    Leading dimensions broadcast (e.g. gts ``[N, G, 4]`` against priors ``[1, P, 4]``).
    """
    from dainet.jt import jt

    return _pairwise_iou(a.unsqueeze(-2), b.unsqueeze(-3), plus1, jt.minimum, jt.maximum,
                         lambda x: x.clamp(min_v=0), lambda u: u.clamp(min_v=_MIN_UNION))
