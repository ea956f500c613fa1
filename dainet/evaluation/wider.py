"""WIDER FACE validation AP (easy / medium / hard), as the official ``eval_tools``.

Ground truth: the official ``.mat`` files (spec §11) -- ``wider_face_val.mat``
(``event_list``, ``file_list``, ``face_bbx_list``: boxes in pixels (x, y, w, h)) and
``wider_{easy,medium,hard}_val.mat`` (``gt_list``: 1-based indices of the faces that
count in that setting). The other faces of an image are "ignore" faces: a prediction
whose best match is one of them is no proposal at all.

Predictions: a folder ``<event>/<image>.txt``, each file holding the image name, the
box count, then ``x y w h score`` lines (pixels; :mod:`dainet.formats.predictions`). A missing file is an image without
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

from dainet.boxes.convert import xywh_to_xyxy
from dainet.errors import UserError
from dainet.evaluation.common import (APResult, check_prediction_names, match_images,
                                      normalize_scores, scheme_ap)
from dainet.formats.predictions import ImageKey, read_wider_predictions  # noqa: F401 (re-exported)
from dainet.formats.wider_mat import read_gt_list, read_wider_mat

SETTINGS = ("easy", "medium", "hard")


@dataclass(frozen=True)
class WiderGroundTruth:
    """The validation ground truth, one entry per image in the official order."""
    images: list[ImageKey]
    boxes_xywh: list[np.ndarray]           # [G_i, 4] float64 pixels
    counted: dict[str, list[np.ndarray]]   # setting -> per image, 0-based indices of the faces that count


def load_wider_ground_truth(gt_dir: str | Path, settings: Sequence[str] = SETTINGS) -> WiderGroundTruth:
    """Read ``wider_face_val.mat`` and ``wider_<setting>_val.mat`` from ``gt_dir``
    (:mod:`dainet.formats.wider_mat`). An image without faces keeps its all-zero
    placeholder box, as in the official tool: it is a face that counts in no setting."""
    gt_dir = Path(gt_dir)
    face_path = gt_dir / "wider_face_val.mat"
    records = read_wider_mat(face_path, keep_placeholder=True)
    images = [(r.event, r.stem) for r in records]
    boxes = [r.boxes_xywh for r in records]
    sizes = [len(g) for g in _event_groups(images)]

    counted = {}
    for setting in settings:
        path = gt_dir / f"wider_{setting}_val.mat"
        gt_lists = read_gt_list(path)
        if [len(g) for g in gt_lists] != sizes:
            raise UserError(f"{path}: gt_list does not match the images of {face_path.name}")
        per_image = [idx - 1 for g in gt_lists for idx in g]
        for (event, name), idx, bbx in zip(images, per_image, boxes):
            if idx.size and (idx.min() < 0 or idx.max() >= len(bbx)):
                raise UserError(f"{path}: gt_list of {event}/{name} indexes beyond its {len(bbx)} faces")
        counted[setting] = per_image
    return WiderGroundTruth(images, boxes, counted)


def _event_groups(images: list[ImageKey]) -> list[list[ImageKey]]:
    """The images grouped by event, in file order (each event is one run of the list)."""
    groups: list[list[ImageKey]] = []
    for key in images:
        if not groups or groups[-1][0][0] != key[0]:
            groups.append([])
        groups[-1].append(key)
    return groups


# ------------------------------------------------------------------------- evaluation

def evaluate_wider(predictions: Mapping[ImageKey, np.ndarray], gt: WiderGroundTruth | str | Path,
                   iou_thresh: float = 0.5, n_thresholds: int = 1000, bootstrap: int = 0,
                   seed: int = 0) -> dict[str, APResult]:
    """AP and PR curve per setting of WIDER FACE val.

    ``predictions``: {(event, image): ``[K, 5]`` pixels (x, y, w, h, score)}, any
    order within an image; images absent from it have no predictions. Scores are
    min-max normalised over the predictions of the ground truth's images. ``bootstrap`` > 0:
    each result's ``replicates`` (and ``ci``), resampling the val images (the same draws for every setting).
    """
    if not isinstance(gt, WiderGroundTruth):
        gt = load_wider_ground_truth(gt)
    check_prediction_names(list(predictions), set(gt.images), lambda k: f"{k[0]}/{k[1]}.txt")

    empty = np.zeros((0, 5))
    raw = [np.asarray(predictions.get(key, empty), np.float64).reshape(-1, 5) for key in gt.images]
    scores = normalize_scores([p[:, 4] for p in raw])
    matches = match_images([xywh_to_xyxy(p[:, :4]) for p in raw], scores,
                           [xywh_to_xyxy(b) for b in gt.boxes_xywh])

    offsets = np.concatenate(([0], np.cumsum([len(b) for b in gt.boxes_xywh])))
    results = {}
    for setting, per_image in gt.counted.items():
        counts = np.zeros(matches.n_gt, bool)
        counts[np.concatenate([idx + off for idx, off in zip(per_image, offsets[:-1])])] = True
        n_faces = sum(idx.size for idx in per_image)
        results[setting] = scheme_ap(matches, counts, n_faces, iou_thresh, n_thresholds, bootstrap, seed)
    return results
