"""SSD matching of ground-truth faces to priors, vectorised over the batch (spec §9).

Ground truth comes as one padded array ``gt [N, G, 5]``: rows ``(x1, y1, x2, y2, label)``
with xyxy normalised and label 1 for a face; images with fewer than ``G`` faces are
padded with rows of label -1 (:func:`pad_targets`), which never match anything.
"""
from __future__ import annotations

import numpy as np

from dainet.jt import jt

from dainet.boxes.coder import cxcywh_to_xyxy, encode
from dainet.boxes.iou import iou_xyxy

PAD_LABEL = -1
# Stands in for padding rows so that encoding a prior against one stays finite; such
# priors are background and their loc targets are never used.
_PLACEHOLDER_XYXY = (0.0, 0.0, 1.0, 1.0)
# IoU written over a forced match: above any real IoU, so the prior is always positive.
_FORCED_IOU = 2.0


def pad_targets(per_image: list) -> np.ndarray:
    """Stack per-image ``[G_i, 5]`` arrays into ``[N, max(G_i, 1), 5]`` float32.

    Missing rows are padding (label -1); every image gets at least one row so that
    no array has a zero-size dimension.
    """
    n_rows = max([len(t) for t in per_image] + [1])
    out = np.zeros((len(per_image), n_rows, 5), np.float32)
    out[:, :, 4] = PAD_LABEL
    for i, t in enumerate(per_image):  # a copy per image; the arrays differ in length
        out[i, :len(t)] = np.asarray(t, np.float32).reshape(-1, 5)
    return out


def match_gt_index(iou: jt.Var, valid: jt.Var) -> tuple[jt.Var, jt.Var]:
    """Index of the gt assigned to each prior and its IoU: ``iou [N, G, P]`` -> two ``[N, P]``.

    Each prior takes its best gt; each valid gt then forces its own best prior (IoU set to
    2), the later gt winning when two share one. ``valid [N, G]`` masks out padding rows.
    """
    _, g, p = iou.shape
    iou = jt.ternary(valid.unsqueeze(2).broadcast(iou.shape), iou, jt.full_like(iou, -1.0))
    best_gt, best_iou = jt.argmax(iou, dim=1)                      # [N, P]
    best_prior, _ = jt.argmax(iou, dim=2)                          # [N, G]
    is_best = (best_prior.unsqueeze(2) == jt.arange(p).int32().reshape(1, 1, p)) \
        & valid.unsqueeze(2)                                       # [N, G, P]
    # 1 + index of the last gt whose best prior this is; 0 where no gt forces it.
    gt_number = jt.arange(1, g + 1).int32().reshape(1, g, 1)
    forced_gt = (is_best.int32() * gt_number).max(dim=1) - 1       # [N, P]
    forced = forced_gt >= 0
    best_gt = jt.ternary(forced, forced_gt, best_gt)
    best_iou = jt.ternary(forced, jt.full_like(best_iou, _FORCED_IOU), best_iou)
    return best_gt, best_iou


def match(gt: jt.Var, priors_cxcywh: jt.Var, iou_thresh: float, variances) -> tuple[jt.Var, jt.Var]:
    """Regression and class targets for every prior of every image.

    ``gt [N, G, 5]`` (xyxy normalised, label; label -1 = padding), ``priors_cxcywh [P, 4]``
    -> ``loc_t [N, P, 4]`` (:func:`~dainet.boxes.coder.encode` of the assigned gt) and
    ``conf_t [N, P]`` int32: the assigned gt's label where its IoU >= ``iou_thresh``
    (params ``train.match_iou``), else 0 (background). Images without faces are all background.
    """
    if gt.ndim != 3 or gt.shape[2] != 5:
        raise ValueError(f"gt must be [N, G, 5], got {list(gt.shape)}")
    if gt.shape[1] == 0:
        gt = jt.array(pad_targets([[]] * gt.shape[0]))
    valid = gt[:, :, 4] >= 0                                       # [N, G]
    placeholder = jt.array(np.array(_PLACEHOLDER_XYXY + (PAD_LABEL,), np.float32))
    gt = jt.ternary(valid.unsqueeze(2).broadcast(gt.shape), gt, placeholder.broadcast(gt.shape))
    iou = iou_xyxy(gt[:, :, :4], cxcywh_to_xyxy(priors_cxcywh).unsqueeze(0))  # [N, G, P]
    best_gt, best_iou = match_gt_index(iou, valid)
    n, p = best_gt.shape
    assigned = jt.gather(gt, 1, best_gt.unsqueeze(2).broadcast((n, p, 5)))      # [N, P, 5]
    loc_t = encode(assigned[:, :, :4], priors_cxcywh, variances)
    conf_t = jt.ternary(best_iou >= iou_thresh, assigned[:, :, 4].int32(),
                        jt.zeros((n, p), "int32"))
    return loc_t, conf_t
