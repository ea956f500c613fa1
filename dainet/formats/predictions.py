"""Prediction files of the WIDER FACE and DARK FACE protocols (spec §10, §12): the writers
of the predict stage (atomic) and the readers of the evaluators.

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

Reading (the evaluators): a WIDER file must hold the name line, the count and exactly
that many ``x y w h score`` lines; a DARK FACE file any number of ``x1 y1 x2 y2 score``
lines (empty: no detections). Trailing blank lines are ignored; every malformed line
is a :class:`UserError` naming the file and its line. So is a box of negative width or
height (WIDER ``w < 0`` or ``h < 0``; DARK FACE ``x2 < x1`` or ``y2 < y1``; a zero-size
box is accepted) and a score outside [0, 1]: the detector's scores are probabilities, and
the evaluation min-max normalises scores over the whole set, so one file on another
scale would silently change every AP. What the writers above write always passes.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

import numpy as np

from dainet.boxes.convert import xyxy_to_xywh
from dainet.errors import UserError
from dainet.formats.text import content_lines, parse_count, parse_number_rows
from dainet.utils.fileio import write_text

FORMATS = ("wider", "darkface")   # the prediction file formats below

ImageKey = tuple[str, str]  # WIDER: (event folder, image name without extension)

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
    xywh = xyxy_to_xywh(dets, plus1=True)
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


# ---------------------------------------------------------------------------- reading

def read_wider_prediction_file(path: str | Path) -> np.ndarray:
    """One WIDER prediction file -> ``[K, 5]`` float64 (x, y, w, h, score) in file order."""
    lines = content_lines(path, "prediction file")
    if len(lines) < 2:
        if len(lines) == 0:
            return np.zeros((0, 5))
        raise UserError(f"{path}:2: expected a box count after the image name")
    n = parse_count(lines[1], path, 2)
    box_lines = lines[2:]
    if len(box_lines) != n:
        raise UserError(f"{path}:2: count says {n} boxes but {len(box_lines)} box lines follow")
    return _checked(parse_number_rows(box_lines, 5, path, first_lineno=3), box_lines, path, 3, xyxy=False)


def read_darkface_prediction_file(path: str | Path) -> np.ndarray:
    """One DARK FACE prediction file -> ``[K, 5]`` float64 (x1, y1, x2, y2, score), file
    order; an empty file gives K = 0."""
    lines = content_lines(path, "prediction file")
    return _checked(parse_number_rows(lines, 5, path, first_lineno=1), lines, path, 1, xyxy=True)


def _checked(rows: np.ndarray, lines: list[str], path: str | Path, first_lineno: int,
             xyxy: bool) -> np.ndarray:
    """``rows`` (parsed from ``lines``, the first at ``first_lineno``), or a
    :class:`UserError` at the first line whose box has a negative width or height or
    whose score is outside [0, 1]."""
    if xyxy:
        bad_box = (rows[:, 2] < rows[:, 0]) | (rows[:, 3] < rows[:, 1])
    else:
        bad_box = (rows[:, 2] < 0) | (rows[:, 3] < 0)
    bad_score = (rows[:, 4] < 0) | (rows[:, 4] > 1)
    bad = np.flatnonzero(bad_box | bad_score)
    if bad.size:
        k = int(bad[0])
        where, text = f"{path}:{first_lineno + k}", lines[k].strip()
        if bad_box[k]:
            what = ("inverted box, x2 < x1 or y2 < y1 (x1 y1 x2 y2 score)" if xyxy
                    else "negative box width or height (x y w h score)")
        else:
            what = (f"score {rows[k, 4]:g} is outside [0, 1] (scores are probabilities; the "
                    f"evaluation normalises them over the whole set)")
        raise UserError(f"{where}: {what}, got {text!r}")
    return rows


def _folder(pred_dir: str | Path) -> Path:
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise UserError(f"{pred_dir}: prediction folder not found")
    return pred_dir


def _read_all(paths, key: Callable[[Path], tuple], reader) -> dict:
    return {key(p): reader(p) for p in paths}


def read_wider_predictions(pred_dir: str | Path) -> dict[ImageKey, np.ndarray]:
    """All ``<event>/<image>.txt`` under ``pred_dir`` -> {(event, image): [K, 5] xywh + score}."""
    return _read_all(sorted(_folder(pred_dir).glob("*/*.txt")), lambda p: (p.parent.name, p.stem),
                     read_wider_prediction_file)


def read_darkface_predictions(pred_dir: str | Path) -> dict[str, np.ndarray]:
    """{image stem: ``[K, 5]`` x1 y1 x2 y2 score} for every ``*.txt`` in ``pred_dir``."""
    return _read_all(sorted(_folder(pred_dir).glob("*.txt")), lambda p: p.stem,
                     read_darkface_prediction_file)
