"""SSD box encoding against priors (spec §4): matched xyxy boxes <-> regression targets."""
from __future__ import annotations

from dainet.jt import jt


def cxcywh_to_xyxy(boxes: jt.Var) -> jt.Var:
    """``[..., 4]`` cxcywh -> ``[..., 4]`` xyxy."""
    half = boxes[..., 2:] / 2
    return jt.concat([boxes[..., :2] - half, boxes[..., :2] + half], dim=-1)


def xyxy_to_cxcywh(boxes: jt.Var) -> jt.Var:
    """``[..., 4]`` xyxy -> ``[..., 4]`` cxcywh."""
    return jt.concat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]],
                     dim=-1)


def encode(matched_xyxy: jt.Var, priors_cxcywh: jt.Var, variances) -> jt.Var:
    """Regression targets ``[..., P, 4]`` of boxes ``[..., P, 4]`` xyxy matched to priors.

    ``priors_cxcywh [P, 4]``; the targets are
    ``((gcx - cx) / (v0 w), (gcy - cy) / (v0 h), log(gw / w) / v1, log(gh / h) / v1)``,
    all normalised coordinates; ``variances = (v0, v1)`` (params ``priors.variances``).
    """
    g = xyxy_to_cxcywh(matched_xyxy)
    centre = (g[..., :2] - priors_cxcywh[:, :2]) / (variances[0] * priors_cxcywh[:, 2:])
    size = jt.log(g[..., 2:] / priors_cxcywh[:, 2:]) / variances[1]
    return jt.concat([centre, size], dim=-1)


def decode(loc: jt.Var, priors_cxcywh: jt.Var, variances) -> jt.Var:
    """Boxes ``[..., P, 4]`` xyxy normalised from regressions ``loc [..., P, 4]``.

    The inverse of :func:`encode`: centre ``c + loc[:2] * v0 * wh``,
    size ``wh * exp(loc[2:] * v1)``.
    """
    centre = priors_cxcywh[:, :2] + loc[..., :2] * variances[0] * priors_cxcywh[:, 2:]
    size = priors_cxcywh[:, 2:] * jt.exp(loc[..., 2:] * variances[1])
    return cxcywh_to_xyxy(jt.concat([centre, size], dim=-1))
