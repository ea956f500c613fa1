"""Greedy non-maximum suppression (spec §10).

Not ``jt.nms``: Jittor 1.3.11's version measures IoU with the +1 pixel convention
(``x2 - x1 + 1``), while the reference detector uses continuous coordinates.
"""
from __future__ import annotations

import numpy as np

from dainet.boxes.iou import iou_xyxy_np


def nms(boxes_xyxy: np.ndarray, scores: np.ndarray, iou_thresh: float, top_k: int,
        max_keep: int | None = None) -> np.ndarray:
    """Indices into ``boxes_xyxy [K, 4]`` of the kept boxes, by descending score.

    Only the ``top_k`` highest-scoring boxes are candidates; a box is suppressed when its
    IoU (no +1) with an already kept box is > ``iou_thresh``. ``max_keep`` stops once that
    many are kept (the first ``max_keep`` kept boxes do not depend on the rest).
    """
    order = np.argsort(-np.asarray(scores), kind="stable")[:top_k]
    boxes = np.asarray(boxes_xyxy)
    limit = len(order) if max_keep is None else max_keep
    keep = []
    # One pass per kept box; each pass drops, at once, every candidate it suppresses.
    while order.size and len(keep) < limit:
        best, order = order[0], order[1:]
        keep.append(best)
        order = order[iou_xyxy_np(boxes[best][None], boxes[order])[0] <= iou_thresh]
    return np.asarray(keep, dtype=np.int64)
