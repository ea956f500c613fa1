"""Multibox loss against a per-sample float64 numpy reference (spec §9)."""
import numpy as np
import pytest

import dainet.jt  # noqa: F401  (configures Jittor before it loads)
import jittor as jt

from dainet.boxes.matcher import pad_targets
from helpers import prior_spec
from dainet.losses.multibox import MultiBoxLoss

VAR = (0.1, 0.2)
PRIORS = prior_spec(sizes=[8, 16, 32, 64, 128, 256]).priors((64, 64))
PRIORS = PRIORS.astype(np.float64)  # 342 priors


# ---------------------------------------------------------------- the reference, loop by loop
def _iou(box, others):
    iw = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = iw * ih
    area = (box[2] - box[0]) * (box[3] - box[1])
    return inter / (area + (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1]) - inter)


def _match_one(gts, labels, thresh):
    p = len(PRIORS)
    if len(gts) == 0:
        return np.zeros((p, 4)), np.zeros(p, np.int64)
    pri_xyxy = np.concatenate([PRIORS[:, :2] - PRIORS[:, 2:] / 2,
                               PRIORS[:, :2] + PRIORS[:, 2:] / 2], 1)
    overlaps = np.stack([_iou(g, pri_xyxy) for g in gts])          # [G, P]
    best_prior = overlaps.argmax(1)
    best_truth, best_overlap = overlaps.argmax(0), overlaps.max(0)
    best_overlap[best_prior] = 2.0
    for j in range(len(gts)):
        best_truth[best_prior[j]] = j
    m = gts[best_truth]
    conf = labels[best_truth].astype(np.int64)
    conf[best_overlap < thresh] = 0
    g_c, g_wh = (m[:, :2] + m[:, 2:]) / 2, m[:, 2:] - m[:, :2]
    loc = np.concatenate([(g_c - PRIORS[:, :2]) / (VAR[0] * PRIORS[:, 2:]),
                          np.log(g_wh / PRIORS[:, 2:]) / VAR[1]], 1)
    return loc, conf


def _reference_loss(loc_p, conf_p, targets, thresh=0.35, ratio=3):
    loss_l = loss_c = 0.0
    total_pos = 0
    for n in range(len(loc_p)):
        rows = targets[n][targets[n][:, 4] >= 0]
        loc_t, conf_t = _match_one(rows[:, :4], rows[:, 4], thresh)
        pos = conf_t > 0
        d = np.abs(loc_p[n][pos] - loc_t[pos])
        loss_l += np.where(d < 1, 0.5 * d * d, d - 0.5).sum()
        z = conf_p[n]
        lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
        ce = lse - z[np.arange(len(z)), conf_t]
        mining = ce.copy()
        mining[pos] = 0
        num_neg = min(ratio * pos.sum(), len(z) - 1)
        neg = np.zeros_like(pos)
        neg[np.argsort(-mining, kind="stable")[:num_neg]] = True
        loss_c += ce[pos | neg].sum()
        total_pos += pos.sum()
    norm = total_pos if total_pos > 0 else len(loc_p)
    return loss_l / norm, loss_c / norm, total_pos


def _random_targets(rng, counts):
    per_image = []
    for g in counts:
        xy = rng.uniform(0, 0.7, (g, 2))
        wh = rng.uniform(0.03, 0.3, (g, 2))
        per_image.append(np.concatenate([xy, xy + wh, np.ones((g, 1))], 1))
    return pad_targets(per_image)


# ---------------------------------------------------------------- tests
def _loss(loc_p, conf_p, targets):
    crit = MultiBoxLoss(match_iou=0.35, neg_pos_ratio=3, variances=VAR)
    return crit(jt.array(loc_p.astype(np.float32)), jt.array(conf_p.astype(np.float32)),
                PRIORS.astype(np.float32), targets)


@pytest.mark.parametrize("seed,counts", [(0, [3, 1, 4]), (1, [2, 0, 5])])
def test_multibox_matches_numpy_reference(seed, counts):
    rng = np.random.default_rng(seed)
    p = len(PRIORS)
    loc_p = rng.normal(0, 1.5, (3, p, 4)).astype(np.float32)  # both smooth-L1 branches occur
    conf_p = rng.normal(0, 2, (3, p, 2)).astype(np.float32)
    targets = _random_targets(rng, counts)
    loss_l, loss_c = _loss(loc_p, conf_p, targets)
    ref_l, ref_c, total_pos = _reference_loss(loc_p.astype(np.float64), conf_p.astype(np.float64),
                                              targets.astype(np.float64))
    assert total_pos > sum(counts)  # some priors are positive by IoU, not only forced
    np.testing.assert_allclose(loss_l.item(), ref_l, rtol=1e-5)
    np.testing.assert_allclose(loss_c.item(), ref_c, rtol=1e-5)


def test_multibox_without_positives_is_zero_not_nan():
    rng = np.random.default_rng(3)
    p = len(PRIORS)
    loss_l, loss_c = _loss(rng.normal(size=(2, p, 4)), rng.normal(size=(2, p, 2)),
                           pad_targets([np.zeros((0, 5)), np.zeros((0, 5))]))
    assert loss_l.item() == 0.0 and loss_c.item() == 0.0


def test_multibox_gradients_reach_only_the_selected_priors():
    rng = np.random.default_rng(4)
    p = len(PRIORS)
    loc_p = jt.array(rng.normal(size=(2, p, 4)).astype(np.float32))
    conf_p = jt.array(rng.normal(size=(2, p, 2)).astype(np.float32))
    targets = _random_targets(rng, [2, 1])
    crit = MultiBoxLoss(match_iou=0.35, neg_pos_ratio=3, variances=VAR)
    loss_l, loss_c = crit(loc_p, conf_p, PRIORS.astype(np.float32), targets)
    g_loc, g_conf = jt.grad(loss_l + loss_c, [loc_p, conf_p])
    g_loc, g_conf = g_loc.numpy(), g_conf.numpy()
    has_loc = np.abs(g_loc).sum(2) > 0
    has_conf = np.abs(g_conf).sum(2) > 0
    # loc gradient exactly at the positives; conf gradient at positives + 3x as many negatives
    n_pos = has_loc.sum(1)
    assert (n_pos > 0).all()
    np.testing.assert_array_equal(has_conf.sum(1), 4 * n_pos)
    assert (has_conf[has_loc]).all()


def test_nan_predictions_give_a_nan_loss_not_a_crash():
    """A diverged network (NaN logits) must reach the trainer's finite check; argsort on NaN
    used to crash the process."""
    import numpy as np
    import jittor as jt
    from dainet.losses.multibox import MultiBoxLoss
    priors = prior_spec(sizes=[8, 16, 32, 64, 128, 256]).priors((64, 64))
    p = len(priors)
    conf = np.random.default_rng(0).normal(size=(2, p, 2)).astype(np.float32)
    conf[0, ::3] = np.nan
    targets = np.array([[[0.1, 0.1, 0.5, 0.5, 1]], [[0.2, 0.2, 0.4, 0.6, 1]]], np.float32)
    loss_l, loss_c = MultiBoxLoss(0.35, 3, (0.1, 0.2))(jt.zeros((2, p, 4)), jt.array(conf), priors, targets)
    assert not np.isfinite(loss_c.item())
