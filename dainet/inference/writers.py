"""Prediction files for the WIDER FACE and DARK FACE evaluators (spec §10), written atomically.

WIDER FACE, ``<out>/<event>/<image stem>.txt``::

    <image stem>            e.g. 0_Parade_marchingband_1_20
    <count>
    x y w h score           one line per box

``x = x1``, ``y = y1``, ``w = x2 - x1 + 1``, ``h = y2 - y1 + 1``: the reference
writers (DSFD / PyramidBox ``widerface_val.py``) use the +1 pixel convention, and
the evaluator's IoU (spec §12) adds it back, so ``x2`` round-trips. The first line
is read by neither the official Matlab tool nor the usual Python port (they key
on the file name); we write the stem (the reference writes ``event/name.jpg``).

DARK FACE, ``<out>/<image stem>.txt``: ``x1 y1 x2 y2 score`` lines, no header
(DAI-Net ``test.py``).

Numbers: ``%.3f`` for coordinates (sub-pixel; the reference's ``%.1f`` would move
voted boxes by up to 0.05 px) and ``%.6f`` for scores (the evaluation normalises
scores and thresholds them on a 1/1000 grid; ``%.3f`` would merge distinct scores).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from dainet.utils.fileio import write_text

FORMATS = ("wider", "darkface")   # the prediction file formats below

COORD_FMT = "%.3f"
SCORE_FMT = "%.6f"


def _as_dets(dets_xyxy_score) -> np.ndarray:
    dets = np.asarray(dets_xyxy_score, dtype=np.float64)
    if dets.size == 0:
        return np.zeros((0, 5))
    if dets.ndim != 2 or dets.shape[1] != 5:
        raise ValueError(f"expected [K, 5] detections (x1, y1, x2, y2, score), got shape {dets.shape}")
    if not np.isfinite(dets).all():
        raise ValueError("detections contain NaN or infinite values")
    return dets


def _rows(values: np.ndarray) -> str:
    """``[K, 5]`` -> ``K`` text lines (4 coordinates then the score)."""
    buf = io.StringIO()
    np.savetxt(buf, values, fmt=[COORD_FMT] * 4 + [SCORE_FMT], delimiter=" ")
    return buf.getvalue()


def wider_prediction_text(image_name: str, dets_xyxy_score) -> str:
    """The WIDER file body for one image; ``dets`` ``[K, 5]`` xyxy pixels + score."""
    dets = _as_dets(dets_xyxy_score)
    xywh = np.concatenate([dets[:, :2], dets[:, 2:4] - dets[:, :2] + 1.0, dets[:, 4:]], axis=1)
    return f"{Path(image_name).stem}\n{len(dets)}\n" + _rows(xywh)


def write_wider_prediction(out_dir: str | Path, event: str, image_name: str, dets_xyxy_score) -> Path:
    """Write ``<out_dir>/<event>/<stem of image_name>.txt``; returns its path.

    ``image_name`` is the file name with its extension (``0_Parade_..._20.jpg``).
    """
    if not event or Path(event).name != event:
        raise ValueError(f"event must be one folder name, got {event!r}")
    path = Path(out_dir) / event / f"{Path(image_name).stem}.txt"
    write_text(path, wider_prediction_text(image_name, dets_xyxy_score))
    return path


def darkface_prediction_text(dets_xyxy_score) -> str:
    """The DARK FACE file body: ``x1 y1 x2 y2 score`` lines."""
    return _rows(_as_dets(dets_xyxy_score))


def write_darkface_prediction(out_dir: str | Path, image_name: str, dets_xyxy_score) -> Path:
    """Write ``<out_dir>/<stem of image_name>.txt``; returns its path.

    ``image_name`` is the image's file name with its extension (``1.png``): the
    extension is what gets replaced, so a stem holding a dot stays whole.
    """
    path = Path(out_dir) / f"{Path(image_name).stem}.txt"
    write_text(path, darkface_prediction_text(dets_xyxy_score))
    return path
