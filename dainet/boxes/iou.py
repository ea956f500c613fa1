"""Intersection over union of xyxy boxes on continuous coordinates (no +1 pixel convention)."""
from __future__ import annotations

import numpy as np

import jittor as jt

# Two degenerate (zero-area) boxes have union 0; their IoU is 0, not NaN.
_MIN_UNION = 1e-12


def iou_xyxy(a: jt.Var, b: jt.Var) -> jt.Var:
    """IoU of every pair: ``a [..., A, 4]`` x ``b [..., B, 4]`` (xyxy) -> ``[..., A, B]``.

    Leading dimensions broadcast (e.g. gts ``[N, G, 4]`` against priors ``[1, P, 4]``).
    """
    a, b = a.unsqueeze(-2), b.unsqueeze(-3)  # [..., A, 1, 4], [..., 1, B, 4]
    iw = (jt.minimum(a[..., 2], b[..., 2]) - jt.maximum(a[..., 0], b[..., 0])).clamp(min_v=0)
    ih = (jt.minimum(a[..., 3], b[..., 3]) - jt.maximum(a[..., 1], b[..., 1])).clamp(min_v=0)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area_a + area_b - inter).clamp(min_v=_MIN_UNION)


def iou_xyxy_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """numpy twin of :func:`iou_xyxy`: ``a [..., A, 4]`` x ``b [..., B, 4]`` -> ``[..., A, B]``."""
    a, b = a[..., :, None, :], b[..., None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, _MIN_UNION)
