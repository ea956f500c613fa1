"""WIDER FACE validation AP (easy / medium / hard), as the official ``eval_tools``.

Ground truth: the official ``.mat`` files (spec §11) -- ``wider_face_val.mat``
(``event_list``, ``file_list``, ``face_bbx_list``: boxes in pixels (x, y, w, h)) and
``wider_{easy,medium,hard}_val.mat`` (``gt_list``: 1-based indices of the faces that
count in that setting). The other faces of an image are "ignore" faces: a prediction
whose best match is one of them is no proposal at all.

Predictions: a folder ``<event>/<image>.txt``, each file holding the image name, the
box count, then ``x y w h score`` lines (pixels). A missing file is an image without
predictions (the official tool stops on it; the evaluate stage counts such images with
:func:`~dainet.evaluation.common.missing_predictions` and fails above a limit). Deviations from the official tool, all on input it cannot read either:
a malformed file raises :class:`UserError` (the tool prints "Invalid format" and
treats the image as empty), and the count must equal the number of box lines.

Skip rule (official): an image adds nothing when it has no ground-truth box or no
prediction. An image whose faces all lie outside a setting's gt_list is *not*
skipped: its predictions hitting a face are ignored, the others are false positives.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import scipy.io

from dainet.errors import UserError
from dainet.evaluation.common import (APResult, check_prediction_names, content_lines,
                                      match_images, normalize_scores, parse_count,
                                      parse_number_rows, scheme_ap, xywh_to_corners)

SETTINGS = ("easy", "medium", "hard")

ImageKey = tuple[str, str]  # (event folder, image name without extension)


@dataclass(frozen=True)
class WiderGroundTruth:
    """The validation ground truth, one entry per image in the official order."""
    images: list[ImageKey]
    boxes_xywh: list[np.ndarray]           # [G_i, 4] float64 pixels
    counted: dict[str, list[np.ndarray]]   # setting -> per image, 0-based indices of the faces that count


# ---------------------------------------------------------------------------- reading

def _loadmat(path: Path, keys: Sequence[str]) -> dict:
    if not path.is_file():
        raise UserError(f"{path}: WIDER FACE ground-truth file not found")
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several types for a bad .mat
        raise UserError(f"{path}: cannot read as a MATLAB .mat file ({exc})") from None
    missing = [k for k in keys if k not in mat]
    if missing:
        raise UserError(f"{path}: not a WIDER FACE ground-truth file (missing {', '.join(missing)})")
    return mat


def _cell_column(mat: dict, key: str, path: Path) -> list:
    """A MATLAB ``{n x 1}`` cell array as a list of its n entries."""
    cells = mat[key]
    if cells.dtype != object or cells.ndim != 2 or cells.shape[1] != 1:
        raise UserError(f"{path}: {key}: expected a column cell array, got shape {cells.shape}")
    return [c for c in cells[:, 0]]


def _cell_str(cell) -> str:
    return str(np.asarray(cell).ravel()[0])


def load_wider_ground_truth(gt_dir: str | Path, settings: Sequence[str] = SETTINGS) -> WiderGroundTruth:
    """Read ``wider_face_val.mat`` and ``wider_<setting>_val.mat`` from ``gt_dir``."""
    gt_dir = Path(gt_dir)
    face_path = gt_dir / "wider_face_val.mat"
    face = _loadmat(face_path, ("event_list", "file_list", "face_bbx_list"))
    events = [_cell_str(e) for e in _cell_column(face, "event_list", face_path)]
    file_lists = _cell_column(face, "file_list", face_path)
    bbx_lists = _cell_column(face, "face_bbx_list", face_path)
    if not len(events) == len(file_lists) == len(bbx_lists):
        raise UserError(f"{face_path}: event_list, file_list and face_bbx_list differ in length")

    images, boxes = [], []
    for event, files, bbxs in zip(events, file_lists, bbx_lists):
        if files.shape[0] != bbxs.shape[0]:
            raise UserError(f"{face_path}: event {event}: file_list and face_bbx_list differ in length")
        for name, bbx in zip(files[:, 0], bbxs[:, 0]):
            images.append((event, _cell_str(name)))
            boxes.append(np.asarray(bbx, np.float64).reshape(-1, 4))

    counted = {}
    for setting in settings:
        path = gt_dir / f"wider_{setting}_val.mat"
        gt_lists = _cell_column(_loadmat(path, ("gt_list",)), "gt_list", path)
        if [g.shape[0] for g in gt_lists] != [f.shape[0] for f in file_lists]:
            raise UserError(f"{path}: gt_list does not match the images of {face_path.name}")
        per_image = [np.asarray(k, np.int64).ravel() - 1 for g in gt_lists for k in g[:, 0]]
        for (event, name), idx, bbx in zip(images, per_image, boxes):
            if idx.size and (idx.min() < 0 or idx.max() >= len(bbx)):
                raise UserError(f"{path}: gt_list of {event}/{name} indexes beyond its {len(bbx)} faces")
        counted[setting] = per_image
    return WiderGroundTruth(images, boxes, counted)


def read_wider_prediction_file(path: str | Path) -> np.ndarray:
    """One prediction file -> ``[K, 5]`` float64 (x, y, w, h, score) in file order."""
    lines = content_lines(path)
    if len(lines) < 2:
        if len(lines) == 0:
            return np.zeros((0, 5))
        raise UserError(f"{path}:2: expected a box count after the image name")
    n = parse_count(lines[1], path, 2)
    box_lines = lines[2:]
    if len(box_lines) != n:
        raise UserError(f"{path}:2: count says {n} boxes but {len(box_lines)} box lines follow")
    return parse_number_rows(box_lines, 5, path, first_lineno=3)


def read_wider_predictions(pred_dir: str | Path) -> dict[ImageKey, np.ndarray]:
    """All ``<event>/<image>.txt`` under ``pred_dir`` -> {(event, image): [K, 5] xywh + score}."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise UserError(f"{pred_dir}: prediction folder not found")
    return {(p.parent.name, p.stem): read_wider_prediction_file(p)
            for p in sorted(pred_dir.glob("*/*.txt"))}


# ------------------------------------------------------------------------- evaluation

def evaluate_wider(predictions: Mapping[ImageKey, np.ndarray], gt: WiderGroundTruth | str | Path,
                   iou_thresh: float = 0.5, n_thresholds: int = 1000) -> dict[str, APResult]:
    """AP and PR curve per setting of WIDER FACE val.

    ``predictions``: {(event, image): ``[K, 5]`` pixels (x, y, w, h, score)}, any
    order within an image; images absent from it have no predictions. Scores are
    min-max normalised over the predictions of the ground truth's images.
    """
    if not isinstance(gt, WiderGroundTruth):
        gt = load_wider_ground_truth(gt)
    check_prediction_names(list(predictions), set(gt.images), lambda k: f"{k[0]}/{k[1]}.txt")

    empty = np.zeros((0, 5))
    raw = [np.asarray(predictions.get(key, empty), np.float64).reshape(-1, 5) for key in gt.images]
    scores = normalize_scores([p[:, 4] for p in raw])
    matches = match_images([xywh_to_corners(p[:, :4]) for p in raw], scores,
                           [xywh_to_corners(b) for b in gt.boxes_xywh])

    offsets = np.concatenate(([0], np.cumsum([len(b) for b in gt.boxes_xywh])))
    results = {}
    for setting, per_image in gt.counted.items():
        counts = np.zeros(matches.n_gt, bool)
        counts[np.concatenate([idx + off for idx, off in zip(per_image, offsets[:-1])])] = True
        n_faces = sum(idx.size for idx in per_image)
        results[setting] = scheme_ap(matches, counts, n_faces, iou_thresh, n_thresholds)
    return results
