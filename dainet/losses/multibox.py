"""SSD multibox loss with hard negative mining, vectorised over the batch (spec §9)."""
from __future__ import annotations

import numpy as np

from dainet.jt import jt, nn

from dainet.boxes.matcher import match


def smooth_l1(x: jt.Var, beta: float = 1.0) -> jt.Var:
    """Element-wise smooth-L1 (Huber) of a difference ``x``: quadratic below ``beta``."""
    ax = x.abs()
    return jt.ternary(ax < beta, 0.5 * ax * ax / beta, ax - 0.5 * beta)


def cross_entropy_per_prior(conf_logits: jt.Var, conf_t: jt.Var) -> jt.Var:
    """``-log softmax(conf_logits)[conf_t]``: ``[N, P, C]`` logits, ``[N, P]`` int -> ``[N, P]``."""
    log_p = nn.log_softmax(conf_logits, dim=2)
    return -jt.gather(log_p, 2, conf_t.unsqueeze(2)).squeeze(2)


def hard_negative_mask(ce: jt.Var, pos: jt.Var, neg_pos_ratio: float) -> jt.Var:
    """Negatives ``[N, P]`` bool kept for the confidence loss: per image the
    ``min(neg_pos_ratio * num_pos, P - 1)`` highest-loss priors once positives' loss is zeroed.

    ``ce [N, P]`` per-prior cross-entropy, ``pos [N, P]`` bool.
    """
    p = ce.shape[1]
    mining_loss = jt.ternary(pos, jt.zeros_like(ce), ce).stop_grad()
    # NaN breaks the sort's ordering (Jittor's argsort then crashes): rank it as +inf, so a
    # diverged network reaches the trainer's finite-loss check instead of a segfault
    # (`x != x` is compiled away under fast-math; jt.isnan is not)
    mining_loss = jt.ternary(jt.isnan(mining_loss), jt.full_like(mining_loss, float("inf")), mining_loss)
    order, _ = jt.argsort(mining_loss, dim=1, descending=True)
    rank, _ = jt.argsort(order, dim=1)  # rank[n, i] = position of prior i in the order
    num_neg = jt.minimum(neg_pos_ratio * pos.int32().sum(dim=1, keepdims=True), p - 1)
    return rank < num_neg


class MultiBoxLoss(nn.Module):
    """SSD multibox loss of one shot: ``execute(...) -> (loss_l, loss_c)``.

    Inputs: ``loc_p [N, P, 4]``, ``conf_p [N, P, 2]`` (logits), ``priors [P, 4]`` cxcywh
    normalised, ``targets [N, G, 5]`` xyxy normalised + label, padding rows label -1 (see
    :func:`dainet.boxes.matcher.pad_targets`). ``loss_l``: smooth-L1 over the positives'
    coordinates, summed; ``loss_c``: cross-entropy over positives and hard negatives, summed;
    both divided by the number of positives in the batch (by N when there are none).
    ``match_iou``, ``neg_pos_ratio``: params ``train.*``; ``variances``: ``priors.variances``.
    """

    def __init__(self, match_iou: float, neg_pos_ratio: float, variances,
                 smooth_l1_beta: float = 1.0):
        super().__init__()
        self.match_iou = float(match_iou)
        self.neg_pos_ratio = neg_pos_ratio
        self.variances = tuple(float(v) for v in variances)
        self.smooth_l1_beta = float(smooth_l1_beta)

    def execute(self, loc_p: jt.Var, conf_p: jt.Var, priors, targets) -> tuple[jt.Var, jt.Var]:
        priors = _as_var(priors)
        loc_t, conf_t = match(_as_var(targets), priors, self.match_iou, self.variances)
        pos = conf_t > 0                                                 # [N, P]
        sl1 = smooth_l1(loc_p - loc_t, self.smooth_l1_beta).sum(dim=2)  # [N, P]
        loss_l = jt.ternary(pos, sl1, jt.zeros_like(sl1)).sum()
        ce = cross_entropy_per_prior(conf_p, conf_t)                     # [N, P]
        selected = pos | hard_negative_mask(ce, pos, self.neg_pos_ratio)
        loss_c = jt.ternary(selected, ce, jt.zeros_like(ce)).sum()
        num_pos = pos.float32().sum()
        normaliser = jt.ternary(num_pos > 0, num_pos, jt.full_like(num_pos, loc_p.shape[0]))
        return loss_l / normaliser, loss_c / normaliser


def _as_var(x) -> jt.Var:
    """numpy arrays (priors, padded targets) to float32 Vars; Vars pass through."""
    return x if isinstance(x, jt.Var) else jt.array(np.asarray(x, np.float32))
