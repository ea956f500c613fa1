"""Detections from the network's raw outputs: decode, score, threshold, NMS (spec §10)."""
from __future__ import annotations

import numpy as np

from dainet.jt import jt

from dainet.boxes.coder import decode
from dainet.boxes.nms import nms

FACE = 1  # class index of "face" in conf logits (0 = background)


def detect(loc: jt.Var, conf_logits: jt.Var, priors_cxcywh, variances, conf_thresh: float = 0.05,
           nms_thresh: float = 0.3, top_k: int = 5000, keep_top_k: int = 750) -> list:
    """Per image, an array ``[K, 5]`` float32 of ``(x1, y1, x2, y2, score)``, xyxy normalised.

    ``loc [N, P, 4]`` and ``conf_logits [N, P, 2]`` from one shot, ``priors_cxcywh [P, 4]``.
    Face probability (softmax) > ``conf_thresh``; NMS (IoU > ``nms_thresh`` suppresses) over
    the ``top_k`` best; at most ``keep_top_k`` boxes, by descending score. The thresholds
    are params ``predict.*``; the defaults are the spec's values.
    """
    priors = priors_cxcywh if isinstance(priors_cxcywh, jt.Var) else jt.array(priors_cxcywh)
    boxes = decode(loc, priors, variances).numpy()                     # [N, P, 4]
    scores = jt.nn.softmax(conf_logits, dim=2)[:, :, FACE].numpy()     # [N, P]
    return [detect_one(b, s, conf_thresh, nms_thresh, top_k, keep_top_k)
            for b, s in zip(boxes, scores)]  # NMS is per image, outputs differ in length


def detect_one(boxes_xyxy: np.ndarray, scores: np.ndarray, conf_thresh: float,
               nms_thresh: float, top_k: int, keep_top_k: int) -> np.ndarray:
    """One image: ``boxes_xyxy [P, 4]``, face ``scores [P]`` -> ``[K, 5]`` (see :func:`detect`)."""
    candidates = np.flatnonzero(scores > conf_thresh)
    kept = candidates[nms(boxes_xyxy[candidates], scores[candidates], nms_thresh, top_k,
                          max_keep=keep_top_k)]
    return np.concatenate([boxes_xyxy[kept], scores[kept, None]], axis=1).astype(np.float32)
