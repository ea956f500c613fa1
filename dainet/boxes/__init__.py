"""Boxes for the dual-shot detector: priors, IoU, matching, encode/decode, NMS, detection.

Box formats are named everywhere: ``xyxy`` (corners) or ``cxcywh`` (centre, size),
normalised to [0, 1] by the input width / height unless a name says ``px``.
"""
