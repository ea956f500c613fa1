"""Inference around any detector: the WIDER-style multi-scale test and box voting (spec §10).

Pure numpy / OpenCV; the network enters only as a ``detect_fn`` callable, so nothing here
imports Jittor. Image files and prediction files are read and written by :mod:`dainet.formats`.
"""
from dainet.inference.multiscale import (
    DetectFn, MultiScaleConfig, ScalePass, detect_at_scale, keep_by_size, max_shrink,
    multi_scale_detect, plan_passes,
)
from dainet.inference.voting import box_vote

__all__ = [
    "DetectFn", "MultiScaleConfig", "ScalePass", "detect_at_scale", "keep_by_size", "max_shrink",
    "multi_scale_detect", "plan_passes",
    "box_vote",
]
