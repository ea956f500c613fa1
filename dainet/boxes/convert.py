"""Box format conversions (numpy), the one place where xywh <-> xyxy is computed.

``xywh`` is ``(x1, y1, w, h)``, ``xyxy`` the corners ``(x1, y1, x2, y2)``; the
arithmetic is the same for pixels and for coordinates normalised by the image size
(:func:`normalised_to_pixels` goes from one to the other). Columns after the first
four (a score, a label) pass through unchanged.

``plus1`` is the pixel convention of the official WIDER FACE evaluation and of the
reference prediction writers: a box covering the pixel columns ``x1 .. x2`` is
``x2 - x1 + 1`` wide. Without it (the default) ``w = x2 - x1``: the annotation
files, the training lists and the detector use continuous coordinates. (The official
evaluation reads ``x y w h`` as the corners ``(x, y, x + w, y + h)``, i.e. without
+1, and adds the +1 in its IoU: :func:`dainet.boxes.iou.iou_xyxy_np` with ``plus1``.)
"""
from __future__ import annotations

import numpy as np


def xywh_to_xyxy(boxes_xywh, plus1: bool = False) -> np.ndarray:
    """``[..., 4 + k]`` xywh -> xyxy: ``x2 = x1 + w`` (``x1 + w - 1`` with ``plus1``)."""
    b = np.asarray(boxes_xywh)
    far = b[..., :2] + b[..., 2:4]
    if plus1:
        far = far - 1
    return np.concatenate([b[..., :2], far, b[..., 4:]], axis=-1)


def xyxy_to_xywh(boxes_xyxy, plus1: bool = False) -> np.ndarray:
    """``[..., 4 + k]`` xyxy -> xywh: ``w = x2 - x1`` (``x2 - x1 + 1`` with ``plus1``)."""
    b = np.asarray(boxes_xyxy)
    wh = b[..., 2:4] - b[..., :2]
    if plus1:
        wh = wh + 1.0
    return np.concatenate([b[..., :2], wh, b[..., 4:]], axis=-1)


def normalised_to_pixels(boxes, image_hw: tuple[int, int]) -> np.ndarray:
    """``[..., 4 + k]`` xyxy (or xywh) normalised -> pixels of an ``h x w`` image: x
    columns times ``w``, y columns times ``h``, the other columns unchanged."""
    b = np.asarray(boxes)
    h, w = image_hw
    scale = np.ones(b.shape[-1], dtype=b.dtype)
    scale[:4] = (w, h, w, h)
    return b * scale
