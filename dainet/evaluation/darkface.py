"""DARK FACE AP, as its official Octave tool (the WIDER FACE scheme, spec §12).

Labels: ``<image>.txt`` per image, first line the face count, then ``x1 y1 x2 y2``
lines (pixels; :mod:`dainet.formats.darkface`). Predictions: ``<image>.txt`` (same stem)
with ``x1 y1 x2 y2 score`` lines (:mod:`dainet.formats.predictions`). The label folder defines the evaluated images; a missing prediction file is an
image without predictions (counted by the evaluate stage, see
:func:`~dainet.evaluation.common.missing_predictions`), and prediction files naming no
label are not evaluated.

Differences from WIDER FACE: no ignore set -- every labelled face counts and every
prediction is a proposal; images with no label box or no prediction are skipped
(their predictions are not proposals, their faces still count in the recall).

Box geometry. The official Octave tool reads both files' four columns unchanged and
then applies WIDER's (x, y, w, h) -> corners step to them, i.e. it scores the boxes
(x1, y1, x1 + x2, y1 + y2). That makes its IoU test far more lenient than the
spec's (a 5 px shift of a 20 px face far from the origin still scores IoU ~0.98).
``xyxy_as_xywh=False`` (default) uses the boxes as the corners they are;
``xyxy_as_xywh=True`` reproduces the official tool's arithmetic.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from dainet.boxes.convert import xywh_to_xyxy
from dainet.evaluation.common import (APResult, check_prediction_names, match_images,
                                      normalize_scores, scheme_ap)
# the readers of both inputs, re-exported with the evaluator
from dainet.formats.darkface import read_darkface_labels  # noqa: F401
from dainet.formats.predictions import read_darkface_predictions  # noqa: F401


def evaluate_darkface(predictions: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray],
                      iou_thresh: float = 0.5, n_thresholds: int = 1000,
                      xyxy_as_xywh: bool = False, bootstrap: int = 0, seed: int = 0) -> APResult:
    """AP and PR curve of ``predictions`` {stem: ``[K, 5]`` x1 y1 x2 y2 score} against
    ``labels`` {stem: ``[G, 4]`` x1 y1 x2 y2}. Scores are min-max normalised over the
    predictions of the labelled images. See the module docstring for ``xyxy_as_xywh``.
    ``bootstrap`` > 0: the result's ``ci``, resampling the labelled images
    (:func:`dainet.evaluation.common.bootstrap_aps`).
    """
    stems = sorted(labels)
    check_prediction_names(list(predictions), set(labels), lambda s: f"{s}.txt")

    def corners(b: np.ndarray) -> np.ndarray:
        return xywh_to_xyxy(b) if xyxy_as_xywh else b

    empty = np.zeros((0, 5))
    raw = [np.asarray(predictions.get(s, empty), np.float64).reshape(-1, 5) for s in stems]
    gts = [np.asarray(labels[s], np.float64).reshape(-1, 4) for s in stems]
    matches = match_images([corners(p[:, :4]) for p in raw], normalize_scores([p[:, 4] for p in raw]),
                           [corners(g) for g in gts])
    n_faces = sum(len(g) for g in gts)
    return scheme_ap(matches, np.ones(matches.n_gt, bool), n_faces, iou_thresh, n_thresholds, bootstrap, seed)
