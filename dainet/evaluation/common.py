"""The WIDER FACE evaluation scheme (spec §12), shared by WIDER FACE and DARK FACE.

Both official tools (WIDER's MATLAB ``eval_tools`` and DARK FACE's Octave port of it)
compute the same thing; published numbers are only comparable under it:

1. Min-max score normalisation over every prediction of the whole set
   (:func:`normalize_scores`).
2. Per image, predictions in descending score order (a stable sort: ties keep file
   order -- which of two tied predictions recalls a face changes no count, as ties
   pass every threshold together). Each prediction takes the ground truth of maximum IoU, IoU on corner
   boxes with the +1 pixel convention (:func:`~dainet.boxes.iou.iou_xyxy_np` with
   ``plus1``), first maximum on ties.
   If that IoU >= the threshold, a face that does not count (WIDER: outside the
   setting's gt_list) makes the prediction "ignored" -- no longer a proposal;
   a face that counts is recalled by the first such prediction only
   (:func:`match_images`, :func:`scheme_ap`).
3. At ``n`` thresholds ``t = 1 - k/n`` (k = 1..n) every image contributes, from its
   last prediction with score >= t, its proposals and recalled faces so far; the
   set's precision / recall follow (:func:`pr_curve`), and AP is the VOC all-points
   area (:func:`voc_ap`).

Because each image's scores are sorted, "the last prediction with score >= t" covers
exactly the predictions with score >= t, so the per-image sums become one global
count over all predictions: one stable sort of the whole set by descending score
(which also orders every image), cumulative sums, and a ``searchsorted`` for all
thresholds at once. Only the IoU / best-match step loops over images.
"""
from __future__ import annotations

import csv
import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Container, NamedTuple, Sequence

import numpy as np

from dainet.boxes.iou import iou_xyxy_np
from dainet.errors import UserError
from dainet.utils.fileio import write_text


@dataclass(frozen=True)
class EvaluateConfig:
    """Params ``evaluate`` (each key's rule in :data:`dainet.schema.SCHEMA`).

    ``iou_thresh``: a detection's match; ``thresholds``: score thresholds of the PR curve;
    ``darkface_xyxy_as_xywh``: the Octave tool's reading of DARK FACE boxes
    (:mod:`dainet.evaluation.darkface`); ``max_missing_predictions``: evaluated images
    without a prediction file tolerated; ``bootstrap`` / ``bootstrap_seed``: resamples of
    the images for each AP's interval (0: none).
    """
    iou_thresh: float
    thresholds: int
    darkface_xyxy_as_xywh: bool
    max_missing_predictions: int
    bootstrap: int
    bootstrap_seed: int


class ScoreNormalisationWarning(UserWarning):
    """All prediction scores are equal: min-max normalisation is undefined."""


# ---------------------------------------------------------------------- prediction sets

def check_prediction_names(names: Sequence, known: set, describe) -> None:
    """Predictions must name evaluated images: none matching is an error (a wrong
    folder, not a detector that found nothing -- that one still writes empty files);
    names outside the set are not evaluated, as by the official tools, with a warning.
    ``describe(name)`` renders a name as its file for the messages."""
    unknown = [n for n in names if n not in known]
    if len(unknown) == len(names):
        example = f" (e.g. {describe(unknown[0])})" if unknown else ""
        raise UserError(f"no prediction file names an image of the ground truth{example}")
    if unknown:
        warnings.warn(f"{len(unknown)} prediction files name no ground-truth image and are not "
                      f"evaluated, e.g. {describe(unknown[0])}", stacklevel=3)


def missing_predictions(predictions: Container, evaluated: Sequence) -> list:
    """The evaluated images (in ground-truth order) that have no prediction file.

    The scheme scores such an image as one without detections -- its faces still count
    in the recall -- so a lost file lowers AP without any message (the official MATLAB
    tool and the usual Python port stop on it instead). The evaluate stage counts them
    (metric ``missing_predictions``) and fails above ``evaluate.max_missing_predictions``.
    """
    return [k for k in evaluated if k not in predictions]


# ------------------------------------------------------------------------------ scores

def normalize_scores(scores: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Min-max normalise a whole set's scores (a list of per-image ``[K_i]`` arrays).

    Computed as ``(s - min) / (max - min)`` in float64, as the official tools do (the
    MATLAB tool seeds its running max / min with realmin / realmax, the common Python
    port with 0 / 1: both give the true extremes for detector scores in [0, 1]).
    When every score is equal this is 0/0 in the official tools: every normalised
    score is NaN, no prediction passes any threshold and AP is 0. We return the same
    NaNs (``pr_curve`` lets NaN pass no threshold) and warn instead of staying silent.
    """
    nonempty = [s for s in scores if s.size]
    if not nonempty:
        return [np.asarray(s, np.float64) for s in scores]
    lo = min(float(s.min()) for s in nonempty)
    hi = max(float(s.max()) for s in nonempty)
    if hi == lo:
        warnings.warn(f"all {sum(s.size for s in nonempty)} prediction scores equal {lo!r}: "
                      "min-max normalisation divides by zero, so (as in the official tool) "
                      "no prediction passes any threshold and AP is 0",
                      ScoreNormalisationWarning, stacklevel=2)
        return [np.full(s.shape, np.nan) for s in scores]
    return [(np.asarray(s, np.float64) - lo) / (hi - lo) for s in scores]


@dataclass(frozen=True)
class Matches:
    """Every evaluated prediction of a set, sorted by descending score over the set.

    The sort is stable, so each image's predictions keep the order in which the
    official tool walks them. ``best_gt`` indexes the set's ground truth concatenated
    over *all* its images, so per-face flags are one array for the whole set.
    """
    score: np.ndarray     # [N] normalised score, descending (NaN last)
    best_gt: np.ndarray   # [N] int64, gt of maximum IoU (first on ties)
    best_iou: np.ndarray  # [N] float64, that IoU
    n_gt: int             # number of gt boxes of the whole set
    image: np.ndarray     # [N] int64, the prediction's image (index into the set's images)
    gt_image: np.ndarray  # [n_gt] int64, each gt box's image
    n_images: int         # images of the set, those without predictions or gt included


def match_images(pred_corners: Sequence[np.ndarray], pred_scores: Sequence[np.ndarray],
                 gt_corners: Sequence[np.ndarray]) -> Matches:
    """Best-IoU ground truth of every prediction, image by image.

    ``pred_corners[i]``: ``[P_i, 4]`` corners in file order, ``pred_scores[i]``:
    ``[P_i]`` normalised scores, ``gt_corners[i]``: ``[G_i, 4]``. Images without
    predictions or without ground truth are skipped, as by the official tools: their
    predictions are not proposals at all. One stable sort of the whole set by
    descending score then gives every image the official per-image order.
    """
    sizes = [len(g) for g in gt_corners]
    offsets = np.concatenate(([0], np.cumsum(sizes)))
    gt_image = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
    scores, best_gt, best_iou, image = [], [], [], []
    for i, (boxes, score, gt) in enumerate(zip(pred_corners, pred_scores, gt_corners)):
        if len(boxes) == 0 or len(gt) == 0:
            continue
        iou = iou_xyxy_np(boxes, gt, plus1=True)
        arg = iou.argmax(axis=1)
        scores.append(score)
        best_gt.append(arg + offsets[i])
        best_iou.append(np.take_along_axis(iou, arg[:, None], axis=1)[:, 0])
        image.append(np.full(len(boxes), i, np.int64))
    if not scores:
        empty = np.zeros(0)
        return Matches(empty, np.zeros(0, np.int64), empty, int(offsets[-1]), np.zeros(0, np.int64),
                       gt_image, len(sizes))
    score = np.concatenate(scores)
    order = np.argsort(-score, kind="stable")   # once for all settings and thresholds
    return Matches(score[order], np.concatenate(best_gt).astype(np.int64)[order],
                   np.concatenate(best_iou)[order], int(offsets[-1]), np.concatenate(image)[order],
                   gt_image, len(sizes))


# ------------------------------------------------------------------------- PR and AP

@dataclass(frozen=True)
class PRCurve:
    """Precision / recall at each score threshold (thresholds descending)."""
    thresholds: np.ndarray  # [T] 1 - k/T, k = 1..T
    proposals: np.ndarray   # [T] int64, predictions with score >= t that are not ignored
    recalled: np.ndarray    # [T] int64, faces that count recalled by them
    precision: np.ndarray   # [T] recalled / proposals; NaN where nothing is proposed
    recall: np.ndarray      # [T] recalled / faces that count


class APResult(NamedTuple):
    ap: float
    curve: PRCurve
    replicates: np.ndarray | None = None   # [B] AP of each resample of the set's images (:func:`bootstrap_aps`)

    @property
    def ci(self) -> tuple[float, float] | None:
        """The :data:`LEVEL` percentile interval of the replicates; None without a bootstrap."""
        return None if self.replicates is None else percentile_interval(self.replicates)


def score_thresholds(n_thresholds: int) -> np.ndarray:
    """``[n]`` thresholds ``1 - k/n`` for k = 1..n, the same float64 values as the official tool
    (``n >= 1``: the schema's rule for ``evaluate.thresholds``)."""
    return 1.0 - np.arange(1, n_thresholds + 1) / n_thresholds


def first_hits(best_gt: np.ndarray, recalls: np.ndarray) -> np.ndarray:
    """``[N]`` bool: predictions that recall their face first (later hits add no recall).

    ``recalls [N]`` marks predictions that hit a face that counts, in :class:`Matches`
    order. A face belongs to one image and the set order keeps each image's order,
    so the first occurrence of a gt index is the first hit in its image.
    """
    hit_idx = np.flatnonzero(recalls)
    _, first = np.unique(best_gt[hit_idx], return_index=True)
    out = np.zeros(best_gt.shape, bool)
    out[hit_idx[first]] = True
    return out


def pr_curve(score: np.ndarray, is_proposal: np.ndarray, is_first_hit: np.ndarray,
             n_faces: float, n_thresholds: int, weight: np.ndarray | None = None) -> PRCurve:
    """Set-level PR curve from per-prediction flags, all thresholds at once.

    ``score [N]`` descending (NaN last), flags ``[N]`` in the same order. A prediction
    contributes at threshold t iff its score >= t; NaN scores (the official tool's 0/0
    normalisation) never do. ``weight [N]`` (the bootstrap: how often the prediction's image
    was drawn) counts each prediction that many times; ``n_faces`` is then weighted too.
    """
    t = score_thresholds(n_thresholds)
    if weight is not None:
        is_proposal, is_first_hit = is_proposal * weight, is_first_hit * weight
    prop_cum = np.concatenate(([0], np.cumsum(is_proposal, dtype=np.int64)))
    hit_cum = np.concatenate(([0], np.cumsum(is_first_hit, dtype=np.int64)))
    n_above = np.searchsorted(-score, -t, side="right")   # predictions with score >= t
    proposals = prop_cum[n_above]
    recalled = hit_cum[n_above]
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = recalled / proposals
    return PRCurve(t, proposals, recalled, precision, recalled / n_faces)


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC all-points AP: area under the monotone precision envelope of a PR step curve.

    Sentinels (recall 0, precision 0) in front and (recall 1, precision 0) at the end;
    the envelope is a running maximum from the right; the area sums
    ``Δrecall * envelope`` where recall changes. NaN precision (no proposals) is
    skipped by the maximum as MATLAB's ``max`` skips it; it only occurs where
    recall is still 0, so it never enters the sum.
    """
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.fmax.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def scheme_ap(matches: Matches, counts: np.ndarray, n_faces: int, iou_thresh: float,
              n_thresholds: int, bootstrap: int = 0, seed: int = 0) -> APResult:
    """AP of matched predictions when the faces flagged in ``counts [n_gt]`` count.

    A hit (best IoU >= ``iou_thresh``) on a face that does not count is ignored: it
    is removed from the proposals. ``n_faces`` is the recall denominator (the faces
    that count over the whole set, images without predictions included).
    ``bootstrap`` > 0 adds the APs of that many resampled image sets (:func:`bootstrap_aps`, ``seed``).
    """
    if n_faces <= 0:
        raise UserError("no ground-truth face counts in this evaluation set, AP is undefined")
    hit = matches.best_iou >= iou_thresh
    face_counts = counts[matches.best_gt]
    recalls = hit & face_counts
    ignored = hit & ~face_counts
    proposal, first = ~ignored, first_hits(matches.best_gt, recalls)
    curve = pr_curve(matches.score, proposal, first, n_faces, n_thresholds)
    replicates = None
    if bootstrap > 0:
        faces_per_image = np.bincount(matches.gt_image[counts], minlength=matches.n_images)
        replicates = bootstrap_aps(matches, proposal, first, faces_per_image, n_thresholds, bootstrap, seed)
    return APResult(voc_ap(curve.recall, curve.precision), curve, replicates)


LEVEL = 0.95   # the level of every interval: the evaluation's bootstrap and compare's


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of ``values`` (NaNs left out): their (1 - level) / 2 and
    (1 + level) / 2 quantiles, linearly interpolated; NaN bounds when no value is finite."""
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    if not values.size:
        return math.nan, math.nan
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def bootstrap_aps(matches: Matches, proposal: np.ndarray, first: np.ndarray, faces_per_image: np.ndarray,
                  n_thresholds: int, replicates: int, seed: int) -> np.ndarray:
    """``[replicates]`` float64: the AP of each resample of the set's images.

    Each resample draws the ``n_images`` images with replacement (multinomial counts, seeded by
    ``seed``); an image drawn k times contributes its predictions, proposals, first hits and
    counted faces k times (``faces_per_image [n_images]``), so the flags of the full set stay
    valid. The min-max score normalisation stays the full set's. A resample without a counted
    face is NaN. The draws depend on (``seed``, ``n_images``) only, so two detectors evaluated
    on one image set share them: replicate b of both is the same resample, and their difference
    replicate by replicate is the paired bootstrap over images (:mod:`dainet.evaluation.compare`).
    The evaluation's own uncertainty, not the training's.
    """
    n = matches.n_images
    drawn = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=replicates)   # [B, n_images]
    faces = drawn @ faces_per_image                                                               # [B]
    n_above = np.searchsorted(-matches.score, -score_thresholds(n_thresholds), side="right")    # [T]
    aps = np.full(replicates, np.nan)
    step = max(1, (1 << 22) // max(len(matches.score), 1))   # [chunk, N] weights of at most 4 M entries
    for start in range(0, replicates, step):
        w = drawn[start:start + step][:, matches.image]                                          # [b, N]
        zero = np.zeros((len(w), 1), np.int64)
        proposals = np.concatenate([zero, np.cumsum(w * proposal, axis=1)], axis=1)[:, n_above]  # [b, T]
        recalled = np.concatenate([zero, np.cumsum(w * first, axis=1)], axis=1)[:, n_above]
        f = faces[start:start + step, None].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            recall, precision = recalled / f, recalled / proposals
        # the area row by row with voc_ap itself: its sums, so the same digits as one curve alone
        aps[start:start + step] = [voc_ap(r, q) for r, q in zip(recall, precision)]
    aps[faces <= 0] = np.nan
    return aps


def write_csv(path: str | Path, rows: list[dict], columns: list[str] | None = None) -> None:
    """CSV of ``rows`` (dicts) with the header ``columns`` (default: the first row's keys),
    atomically; floats as Python writes them (``repr``: exact round trip, ``nan``)."""
    if columns is None:
        columns = list(rows[0]) if rows else []
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def write_curve_csv(path: str | Path, curve: PRCurve) -> None:
    """CSV ``threshold,precision,recall`` (atomic); thresholds with no proposal are left out,
    their precision being undefined."""
    rows = ["threshold,precision,recall"]
    defined = ~np.isnan(curve.precision)
    for t, p, r in zip(curve.thresholds[defined], curve.precision[defined], curve.recall[defined]):
        rows.append(f"{t:.6g},{p:.10g},{r:.10g}")
    write_text(path, "\n".join(rows) + "\n")
