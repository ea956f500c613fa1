"""WIDER-style multi-scale test (spec §10), independent of the network.

The detector is any ``detect_fn(image_rgb_float32 [h, w, 3] in [0, 1]) -> [K, 5]``
returning ``x1, y1, x2, y2`` in *that* image's pixels and a score (the predict
stage wraps DAI-Net + ``dainet.boxes.detect``). This module decides at which
scales to run it, maps the boxes back to the original image, filters them by size
and votes over the union (:func:`dainet.inference.voting.box_vote`).

Reading of the reference ``multi_scale_test`` / ``multi_scale_test_pyramid``
(DSFD, PyramidBox, DAI-Net ``test.py``), with ``ms = max_shrink(H, W)`` and the
params of section ``predict`` (the spec values in ``params/wider.yaml``):

1. origin: shrink ``base = min(1, ms)``, every box kept;
2. flip: the horizontally flipped image at ``base``, boxes mirrored back
   (``x1' = W - x2``, ``x2' = W - x1``, original pixels), every box kept;
3. shrink-down: ``st = shrink_scales[0]`` (0.5), or ``shrink_scales[0] * ms``
   when ``ms < shrink_scales[1]``; plus ``shrink_scales[1]`` (0.75) when
   ``ms > shrink_scales[1]``; both keep boxes whose larger side > ``min_side``;
4. enlarge: ``bt = min(f, ms)`` if ``ms > 1`` else ``(st + ms) / 2`` with
   ``f = enlarge_factor`` (2); ``enlarge_extra`` (1.5) when ``ms > 1.5``; when
   ``ms > f``: ``bt *= f`` and, while ``bt < ms``, run ``bt`` and ``bt *= f``; then
   ``ms`` itself. The reference picks the size filter of this whole group from the
   final ``bt``: ``bt > 1`` keeps boxes whose smaller side < ``max_side``, otherwise
   larger side > ``min_side``. Doubling only happens when the first ``bt > 1``, so
   the first ``bt`` decides it (all scales of the group are then > 1, or the group
   is the single ``bt <= 1``);
5. pyramid: each ``s`` of ``pyramid_scales`` (0.25, 1.25, 1.75, 2.25): ``s <= 1``
   always runs and keeps larger side > ``min_side``; ``s > 1`` runs when ``s <= ms``
   and keeps smaller side < ``max_side``.

Box sides in the filters are in original-image pixels with the reference's +1
(``w = x2 - x1 + 1``), e.g. ``max(w, h) > 30``. A scale that occurs twice (e.g.
``ms == 1`` gives 0.75 in steps 3 and 4) contributes its boxes twice, as in the
reference, but the network runs once for it.

Deviations, all documented:
* Origin/flip shrink: DAI-Net's ``test.py`` runs them at 1, DSFD's at ``min(1, ms)``;
  we cap (DSFD). They differ only for images over ``0x7fffffff / factor`` pixels
  (10.7 Mpx at factor 200); neither WIDER FACE nor DARK FACE has such images.
* Mapping back: the reference multiplies the detector's normalised boxes by the
  original size, i.e. divides resized pixels by ``w'/W`` and ``h'/H`` (the resized
  size is rounded by cv2). We do the same per axis rather than dividing by ``shrink``.
* A pass with no detection adds nothing; the reference adds a dummy
  ``[0, 0, 0, 0, 0.001]`` box which two empty passes could vote into an output box.
* A pass whose resized image would be empty (side < 1 px) is skipped.

``single_scale``: only the origin pass (shrink ``min(1, ms)``), no size filter and
no voting -- the reference's ``USE_MULTI_SCALE = False`` path.

``base_scale`` (not in the reference, which is ``base_scale: 1``): a network trained on
images of another scale than the test images' is tested around its own scale. With
``b = base_scale`` the plan above is made for the image resized by ``b`` (largest scale
``ms / b``) and every shrink is multiplied by ``b``; the size filters stay in original
pixels. The sample profile trains on 128-px crops of 256-512 px images and uses
``b = 0.5``: origin and flip at 0.5, shrink-down at 0.25 and 0.375 (big faces),
enlarge at 1.0 and 0.75 (small faces only), so the full-resolution pass no longer
reports face parts of big faces as faces (docs/profiles.md).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from dainet.inference.voting import box_vote

# Caffe's largest blob (INT_MAX elements) bounded the reference's input size.
CAFFE_MAX_BLOB = 0x7FFFFFFF

KEEP_ALL = "all"        # origin and flip passes
KEEP_LARGE = "large"    # larger side > min_side: shrunken images only trust big faces
KEEP_SMALL = "small"    # smaller side < max_side: enlarged images only trust small faces

DetectFn = Callable[[np.ndarray], np.ndarray]


def max_shrink(h: int, w: int, cap: float = 3.0, factor: float = 200.0) -> float:
    """Largest test scale for an ``h x w`` image: ``min(cap, sqrt(0x7fffffff / factor / (h*w)))``."""
    return min(cap, math.sqrt(CAFFE_MAX_BLOB / factor / (h * w)))


@dataclass(frozen=True)
class MultiScaleConfig:
    """Section ``predict`` of params.yaml (``params/wider.yaml`` holds the spec §10 values)."""

    conf_thresh: float               # detector: face score > this
    nms_thresh: float                # detector: NMS IoU
    top_k: int                       # detector: boxes entering NMS
    keep_top_k: int                  # detector output per pass, and voted output
    vote_iou: float
    max_shrink_cap: float
    max_pixels_factor: float
    min_side: float
    max_side: float
    shrink_scales: tuple[float, float]
    pyramid_scales: tuple[float, ...]
    single_scale: bool
    enlarge_factor: float            # first enlarge scale cap and doubling factor
    enlarge_extra: float             # extra enlarge scale when max_shrink exceeds it
    base_scale: float                # the origin pass's scale; every scale of the plan is relative to it
    max_skipped_images: int          # the predict stage: unreadable images allowed before it fails


@dataclass(frozen=True)
class ScalePass:
    """One detector run: the image resized by ``shrink`` (flipped first if ``flip``)."""

    shrink: float
    flip: bool = False
    keep: str = KEEP_ALL    # KEEP_ALL | KEEP_LARGE | KEEP_SMALL


def plan_passes(h: int, w: int, cfg: MultiScaleConfig) -> list[ScalePass]:
    """The passes of the multi-scale test for an ``h x w`` image, in reference order.

    ``cfg.base_scale`` ``b`` (1 in the reference): the reference's plan for the image
    resized by ``b`` (whose largest scale is ``max_shrink / b``), each pass's shrink
    then multiplied by ``b``; the size filters stay in original-image pixels. Every
    shrink stays <= ``max_shrink`` (the reference's memory bound) for any ``b > 0``.
    """
    b = cfg.base_scale
    plan = _reference_plan(max_shrink(h, w, cfg.max_shrink_cap, cfg.max_pixels_factor) / b, cfg)
    return [dataclasses.replace(p, shrink=p.shrink * b) for p in plan]   # exact for b = 1


def _reference_plan(ms: float, cfg: MultiScaleConfig) -> list[ScalePass]:
    """Steps 1-5 of the module docstring for the largest scale ``ms``."""
    base = min(1.0, ms)
    if cfg.single_scale:
        return [ScalePass(base)]
    passes = [ScalePass(base), ScalePass(base, flip=True)]

    down_first, down_second = cfg.shrink_scales
    st = down_first if ms >= down_second else down_first * ms
    passes.append(ScalePass(st, keep=KEEP_LARGE))
    if ms > down_second:
        passes.append(ScalePass(down_second, keep=KEEP_LARGE))

    f = cfg.enlarge_factor
    bt = min(f, ms) if ms > 1 else (st + ms) / 2
    enlarge_keep = KEEP_SMALL if bt > 1 else KEEP_LARGE
    enlarge = [bt]
    if ms > cfg.enlarge_extra:
        enlarge.append(cfg.enlarge_extra)
    if ms > f > 1:   # f > 1 (the schema's rule) ends the doubling
        bt *= f
        while bt < ms:
            enlarge.append(bt)
            bt *= f
        enlarge.append(ms)
    passes += [ScalePass(s, keep=enlarge_keep) for s in enlarge]

    passes += [ScalePass(s, keep=KEEP_SMALL if s > 1 else KEEP_LARGE)
               for s in cfg.pyramid_scales if s <= 1 or s <= ms]
    return passes


def keep_by_size(dets_xyxy_score: np.ndarray, keep: str, min_side: float, max_side: float) -> np.ndarray:
    """Rows of ``[K, 5]`` (original pixels) passing the pass's size filter (+1 side convention)."""
    if keep == KEEP_ALL:
        return dets_xyxy_score
    sides = dets_xyxy_score[:, 2:4] - dets_xyxy_score[:, 0:2] + 1.0   # [K, 2] = (w, h)
    if keep == KEEP_LARGE:
        return dets_xyxy_score[sides.max(axis=1) > min_side]
    if keep == KEEP_SMALL:
        return dets_xyxy_score[sides.min(axis=1) < max_side]
    raise ValueError(f"unknown size filter {keep!r}")


def detect_at_scale(image_rgb: np.ndarray, shrink: float, flip: bool, detect_fn: DetectFn) -> np.ndarray:
    """Run ``detect_fn`` on the (flipped) image resized by ``shrink``; ``[K, 5]`` in original pixels.

    ``image_rgb`` is uint8 ``[H, W, 3]``; like the reference, the uint8 image is
    resized (cv2 INTER_LINEAR, ``fx = fy = shrink``) and only then scaled to [0, 1].
    """
    h, w = image_rgb.shape[:2]
    if round(w * shrink) < 1 or round(h * shrink) < 1:
        return np.zeros((0, 5))
    img = np.ascontiguousarray(image_rgb[:, ::-1]) if flip else image_rgb
    if shrink != 1:
        img = cv2.resize(img, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_LINEAR)
    dets = np.array(detect_fn(img.astype(np.float32) / 255.0), dtype=np.float64).reshape(-1, 5)
    dets[:, [0, 2]] *= w / img.shape[1]
    dets[:, [1, 3]] *= h / img.shape[0]
    if flip:
        dets[:, [0, 2]] = w - dets[:, [2, 0]]
    return dets


def multi_scale_detect(image_rgb: np.ndarray, detect_fn: DetectFn, cfg: MultiScaleConfig) -> np.ndarray:
    """Detections of one image: ``[M, 5]`` (x1, y1, x2, y2 original pixels, score), float64.

    Multi-scale: the box vote over all passes of :func:`plan_passes` (``M <= keep_top_k``).
    ``cfg.single_scale``: the one origin pass, unvoted.
    """
    if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"expected a uint8 [H, W, 3] image, got {image_rgb.dtype} {image_rgb.shape}")
    h, w = image_rgb.shape[:2]
    passes = plan_passes(h, w, cfg)
    runs: dict[tuple[float, bool], np.ndarray] = {}
    kept = []
    for p in passes:
        if (p.shrink, p.flip) not in runs:
            runs[p.shrink, p.flip] = detect_at_scale(image_rgb, p.shrink, p.flip, detect_fn)
        kept.append(keep_by_size(runs[p.shrink, p.flip], p.keep, cfg.min_side, cfg.max_side))
    union = np.concatenate(kept, axis=0)
    if cfg.single_scale:
        return union
    return box_vote(union, cfg.vote_iou, cfg.keep_top_k)


__all__ = [
    "CAFFE_MAX_BLOB", "KEEP_ALL", "KEEP_LARGE", "KEEP_SMALL", "DetectFn", "MultiScaleConfig",
    "ScalePass", "max_shrink", "plan_passes", "keep_by_size", "detect_at_scale", "multi_scale_detect",
]
