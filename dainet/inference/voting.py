"""Box voting over the union of multi-scale detections (spec §10).

Reading of the reference ``bbox_vote`` (DSFD / PyramidBox / DAI-Net ``test.py``),
implemented exactly:

* Boxes are visited in descending score order (ties: input order, stable sort).
* The seed (highest remaining score) collects every remaining box whose IoU with it
  is ``>= iou_thresh``. IoU uses the **+1 pixel convention** of the reference
  (and of the WIDER evaluation, spec §12): ``w = x2 - x1 + 1``, intersection width
  ``min(x2) - max(x1) + 1`` clipped at 0. It is *not* the continuous IoU of the
  detector's NMS (spec §10 says "no +1" for NMS only). The +1 raises the IoU of
  small boxes, so a few more small boxes merge than a continuous IoU would allow.
* The whole cluster leaves the pool. A cluster of one box (a singleton) is dropped.
* A kept cluster becomes one box: coordinates averaged with score weights, score
  = the cluster's maximum (its seed's score).
* Clusters are emitted in seed order, so the first ``keep`` of them are the output;
  the loop stops there (the reference finishes the loop and then truncates, which
  gives the same boxes).

One safety difference: the seed always leaves with its cluster. In the reference a
box with ``x2 < x1 - 1`` has IoU 0 with itself and would never leave the pool
(an endless loop); such boxes cannot come out of the detector, but we do not loop.
"""
from __future__ import annotations

import numpy as np

from dainet.boxes.iou import iou_xyxy_np


def box_vote(dets_xyxy_score: np.ndarray, iou_thresh: float = 0.3, keep: int = 750) -> np.ndarray:
    """Merge overlapping detections; ``[K, 5]`` (x1, y1, x2, y2 pixels, score) -> ``[M, 5]``.

    ``M <= keep``; rows in descending score order; float64. Work is one pass over
    the remaining boxes per visited seed (singletons included), no ``K x K`` matrix,
    so the union of all passes (``K`` of several thousand) stays cheap in memory.
    """
    dets = np.asarray(dets_xyxy_score, dtype=np.float64)
    if dets.ndim != 2 or dets.shape[1] != 5:
        raise ValueError(f"box_vote expects [K, 5] detections, got shape {dets.shape}")
    rest = dets[np.argsort(-dets[:, 4], kind="stable")]
    merged = []
    while len(rest) and len(merged) < keep:
        in_cluster = iou_xyxy_np(rest[:1, :4], rest[:, :4], plus1=True)[0] >= iou_thresh
        in_cluster[0] = True
        cluster, rest = rest[in_cluster], rest[~in_cluster]
        if len(cluster) < 2:
            continue
        weights = cluster[:, 4]
        total = weights.sum()
        # all-zero scores would divide by zero: fall back to a plain mean
        coords = weights @ cluster[:, :4] / total if total > 0 else cluster[:, :4].mean(axis=0)
        merged.append(np.append(coords, weights.max()))
    return np.asarray(merged, dtype=np.float64).reshape(-1, 5)
