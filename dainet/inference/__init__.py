"""Inference around any detector: image reading, WIDER-style multi-scale test,
box voting and prediction files (spec §10). Pure numpy / OpenCV / Pillow; the
network enters only as a ``detect_fn`` callable, so nothing here imports Jittor.
"""
from dainet.inference.images import ImageReadError, read_image
from dainet.inference.multiscale import (
    DetectFn, MultiScaleConfig, ScalePass, detect_at_scale, keep_by_size, max_shrink,
    multi_scale_detect, plan_passes,
)
from dainet.inference.voting import box_vote, iou_one_to_many_plus_one
from dainet.inference.writers import (
    darkface_prediction_text, wider_prediction_text, write_darkface_prediction, write_wider_prediction,
)

__all__ = [
    "ImageReadError", "read_image",
    "DetectFn", "MultiScaleConfig", "ScalePass", "detect_at_scale", "keep_by_size", "max_shrink",
    "multi_scale_detect", "plan_passes",
    "box_vote", "iou_one_to_many_plus_one",
    "darkface_prediction_text", "wider_prediction_text", "write_darkface_prediction",
    "write_wider_prediction",
]
