"""Training augmentation of spec §7 (DSFD / PyramidBox style), numpy + OpenCV.

Images are uint8 ``[H, W, 3]`` RGB; boxes are ``[n, 4]`` float32 xyxy in pixels of the
current image, on the continuous pixel grid (a box covering columns 0..9 is x1=0, x2=10).
The pipeline (:class:`Augmenter`)::

    photometric distortion -> (optional zoom-out expansion)
    -> data-anchor-sampling (p) | SSD square crop (1 - p)
    -> resize to S x S (random interpolation) -> horizontal flip -> drop faces < min_face^2

and returns the S x S uint8 image with boxes normalised xyxy, or ``None`` when no face
is left (the dataset then draws another image).

Choices where the spec leaves room (each is what the reference does unless noted):

* Boxes that survive a crop (centre strictly inside) are clipped to the crop; the
  reference clips after the SSD crop but not after anchor sampling -- we clip both so
  every box describes visible pixels.
* Face area is w * h on the continuous grid (the reference adds 1 pixel to each side).
* Anchor sampling scales and crops in one step (``cv2.warpAffine`` with a constant
  border) when enlarging, so a tiny face blown up 30x never materialises a 30x image;
  the reference instead caps the scale at 12000^2 pixels. Shrinking uses ``cv2.resize``
  on the whole image (cheap, and keeps ``INTER_AREA`` anti-aliasing, which warps lack;
  when enlarging, ``cv2.warpAffine`` treats ``INTER_AREA`` as ``INTER_LINEAR``).
* The pad colour ``pad_value`` is applied in RGB order as listed.
* Of the 50 random tries (anchor offsets or SSD crops) the first valid one is used; the
  reference keeps a random valid one, which has the same distribution (iid tries).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dainet.params import ParamError, Section

# cv2 counterparts of the reference's random resampling filters.
INTERPOLATIONS = (cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA, cv2.INTER_NEAREST,
                  cv2.INTER_LANCZOS4)


@dataclass(frozen=True)
class AugmentConfig:
    """The ``augment`` params section (spec §7)."""
    image_size: int                          # S, side of the square training image
    photometric_prob: float
    brightness_delta: float                  # factor ~ U(1 - delta, 1 + delta)
    contrast_range: tuple[float, float]
    saturation_range: tuple[float, float]
    hue_delta: float                         # shift ~ U(-delta, delta) on the 0-255 hue scale
    anchor_sampling_prob: float
    anchor_scales: tuple[int, ...]
    crop_tries: int
    pad_value: tuple[float, float, float]    # RGB, 0-255 scale
    ssd_crop_min_scale: float                # crop side / shorter image side ~ U(min, 1)
    flip_prob: float
    min_face: float                          # faces below min_face x min_face (area) are dropped
    expand: bool = False
    expand_prob: float = 0.5                 # reference values; only used when expand is on
    expand_max_ratio: float = 4.0

    @classmethod
    def from_params(cls, section: Section) -> "AugmentConfig":
        def probability(key: str) -> float:
            p = section.float(key)
            if not 0.0 <= p <= 1.0:
                raise ParamError(f"{section.source}: {section.path}.{key}: expected a probability, got {p}")
            return p

        size = section.int("image_size")
        scales = tuple(section.list("anchor_scales", int))
        tries = section.int("crop_tries")
        min_scale = section.float("ssd_crop_min_scale")
        for key, ok in (("image_size", size > 0), ("anchor_scales", len(scales) > 0 and min(scales) > 0),
                        ("crop_tries", tries > 0), ("ssd_crop_min_scale", 0.0 < min_scale <= 1.0)):
            if not ok:
                raise ParamError(f"{section.source}: {section.path}.{key}: value out of range")
        return cls(
            image_size=size, photometric_prob=probability("photometric_prob"),
            brightness_delta=section.float("brightness_delta"),
            contrast_range=section.range("contrast_range"),
            saturation_range=section.range("saturation_range"),
            hue_delta=section.float("hue_delta"),
            anchor_sampling_prob=probability("anchor_sampling_prob"),
            anchor_scales=tuple(sorted(scales)), crop_tries=tries,
            pad_value=tuple(section.list("pad_value", float, 3)),
            ssd_crop_min_scale=min_scale, flip_prob=probability("flip_prob"),
            min_face=section.float("min_face"), expand=section.bool("expand"),
            expand_prob=section.float("expand_prob", 0.5),
            expand_max_ratio=section.float("expand_max_ratio", 4.0),
        )


# --- photometric distortion (uint8 in and out, saturated and rounded after each step as PIL does)

def adjust_brightness(img: np.ndarray, factor: float) -> np.ndarray:
    """Blend with black (PIL ImageEnhance.Brightness)."""
    return cv2.addWeighted(img, factor, img, 0.0, 0.0)


def adjust_contrast(img: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the mean grey level (PIL ImageEnhance.Contrast)."""
    mean = float(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).mean())
    return cv2.addWeighted(img, factor, img, 0.0, (1.0 - factor) * mean)


def adjust_saturation(img: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the per-pixel grey image (PIL ImageEnhance.Color)."""
    grey = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return cv2.addWeighted(img, factor, grey, 1.0 - factor, 0.0)


def shift_hue(img: np.ndarray, delta: float) -> np.ndarray:
    """Rotate hue by ``delta`` (rounded) on the 0-255 hue scale, wrapping around."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV_FULL)  # _FULL: hue on 0-255, as PIL's HSV
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(round(delta))) % 256
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)


def photometric_distort(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Brightness, contrast, saturation, hue, each with ``photometric_prob``, in one of two orders.

    uint8 [H, W, 3] RGB in and out (same shape and dtype).
    """
    p = cfg.photometric_prob
    steps = {
        "brightness": lambda x: adjust_brightness(x, rng.uniform(1 - cfg.brightness_delta,
                                                                 1 + cfg.brightness_delta)),
        "contrast": lambda x: adjust_contrast(x, rng.uniform(*cfg.contrast_range)),
        "saturation": lambda x: adjust_saturation(x, rng.uniform(*cfg.saturation_range)),
        "hue": lambda x: shift_hue(x, rng.uniform(-cfg.hue_delta, cfg.hue_delta)),
    }
    order = (("brightness", "contrast", "saturation", "hue") if rng.random() < 0.5
             else ("brightness", "saturation", "hue", "contrast"))
    for name in order:
        if rng.random() < p:
            image = steps[name](image)
    return image


# --- geometry helpers --------------------------------------------------------------------

def box_areas(boxes_xyxy: np.ndarray) -> np.ndarray:
    return (boxes_xyxy[:, 2] - boxes_xyxy[:, 0]) * (boxes_xyxy[:, 3] - boxes_xyxy[:, 1])


def crop_padded(image: np.ndarray, x0: int, y0: int, w: int, h: int, pad) -> np.ndarray:
    """The window [x0, x0 + w) x [y0, y0 + h) of ``image``; parts outside it are ``pad``."""
    out = np.empty((h, w, image.shape[2]), dtype=image.dtype)
    out[:] = np.asarray(pad, dtype=np.float64).round().astype(image.dtype)
    ih, iw = image.shape[:2]
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + w, iw), min(y0 + h, ih)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


def keep_centred_in(boxes_xyxy: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Boxes whose centre lies strictly inside the window, clipped to it and moved to its origin."""
    cx = (boxes_xyxy[:, 0] + boxes_xyxy[:, 2]) / 2
    cy = (boxes_xyxy[:, 1] + boxes_xyxy[:, 3]) / 2
    inside = (cx > x0) & (cx < x1) & (cy > y0) & (cy < y1)
    kept = boxes_xyxy[inside]
    kept = np.clip(kept, [x0, y0, x0, y0], [x1, y1, x1, y1]) - np.array([x0, y0, x0, y0], np.float32)
    return kept.astype(np.float32)


def scale_and_crop(image: np.ndarray, scale: float, x0: int, y0: int, size: int, interpolation: int,
                   pad) -> np.ndarray:
    """The size x size window at (x0, y0) of ``image`` resized by ``scale``, padded outside."""
    h, w = image.shape[:2]
    if scale <= 1.0:
        small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                           interpolation=interpolation)
        return crop_padded(small, x0, y0, size, size, pad)
    # Pixel centres map as cv2.resize does: dst + 0.5 = scale * (src + 0.5), shifted by the crop.
    m = np.array([[scale, 0, 0.5 * scale - 0.5 - x0], [0, scale, 0.5 * scale - 0.5 - y0]])
    return cv2.warpAffine(image, m, (size, size), flags=interpolation, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=tuple(float(v) for v in pad))


def data_anchor_sample(image: np.ndarray, boxes_xyxy: np.ndarray, rng: np.random.Generator,
                       cfg: AugmentConfig) -> tuple[np.ndarray, np.ndarray]:
    """PyramidBox data-anchor-sampling: rescale one random face to a random anchor scale, crop S x S.

    Returns the S x S crop and the boxes (xyxy pixels of the crop) centred in it; when no
    try keeps a face centre inside, the image is returned unchanged.
    """
    scales = np.asarray(cfg.anchor_scales, dtype=np.float64)
    size = cfg.image_size
    face = rng.integers(len(boxes_xyxy))
    side = float(np.sqrt(box_areas(boxes_xyxy[face:face + 1])[0]))
    nearest = int(np.argmin(np.abs(scales - side)))
    target = scales[rng.integers(min(nearest + 1, len(scales) - 1) + 1)]  # up to one step above
    scale = target / side * 2.0 ** rng.uniform(-1, 1)
    interpolation = INTERPOLATIONS[rng.integers(len(INTERPOLATIONS))]

    h, w = image.shape[0] * scale, image.shape[1] * scale
    fx0, fy0, fx1, fy1 = boxes_xyxy[face] * scale
    n = cfg.crop_tries
    if size < max(h, w):
        # A crop containing the face (or inside it, when the face is larger than the crop).
        xlo, xhi = sorted((fx1 - size, fx0))
        ylo, yhi = sorted((fy1 - size, fy0))
    else:
        # The crop is larger than the whole image: it contains all of it.
        xlo, xhi, ylo, yhi = w - size, 0.0, h - size, 0.0
    x0 = np.floor(rng.uniform(xlo, xhi, size=n))
    y0 = np.floor(rng.uniform(ylo, yhi, size=n))
    scaled = boxes_xyxy * scale
    cx = (scaled[:, 0] + scaled[:, 2]) / 2
    cy = (scaled[:, 1] + scaled[:, 3]) / 2
    valid = ((cx[None] > x0[:, None]) & (cx[None] < x0[:, None] + size)
             & (cy[None] > y0[:, None]) & (cy[None] < y0[:, None] + size)).any(axis=1)  # [tries]
    if not valid.any():
        return image, boxes_xyxy
    t = int(np.argmax(valid))
    x0, y0 = int(x0[t]), int(y0[t])
    crop = scale_and_crop(image, scale, x0, y0, size, interpolation, cfg.pad_value)
    return crop, keep_centred_in(scaled.astype(np.float32), x0, y0, x0 + size, y0 + size)


def ssd_square_crop(image: np.ndarray, boxes_xyxy: np.ndarray, rng: np.random.Generator,
                    cfg: AugmentConfig) -> tuple[np.ndarray, np.ndarray]:
    """Square crop, side ~ U(min_scale, 1) x shorter side, that fully contains >= 1 face.

    Faces with centres inside are kept (clipped). Unchanged when no try succeeds.
    """
    h, w = image.shape[:2]
    n = cfg.crop_tries
    side = np.maximum(1, np.floor(rng.uniform(cfg.ssd_crop_min_scale, 1.0, size=n) * min(h, w)))
    x0 = np.floor(rng.uniform(0, 1, size=n) * (w - side))
    y0 = np.floor(rng.uniform(0, 1, size=n) * (h - side))
    b = boxes_xyxy[None]                                                 # [1, n_faces, 4]
    x0_, y0_, s_ = x0[:, None], y0[:, None], side[:, None]               # [tries, 1]
    contains = ((b[..., 0] >= x0_) & (b[..., 1] >= y0_)
                & (b[..., 2] <= x0_ + s_) & (b[..., 3] <= y0_ + s_))     # [tries, n_faces]
    valid = contains.any(axis=1)
    if not valid.any():
        return image, boxes_xyxy
    t = int(np.argmax(valid))
    x0, y0, s = int(x0[t]), int(y0[t]), int(side[t])
    return image[y0:y0 + s, x0:x0 + s], keep_centred_in(boxes_xyxy, x0, y0, x0 + s, y0 + s)


def expand_canvas(image: np.ndarray, boxes_xyxy: np.ndarray, rng: np.random.Generator,
                  cfg: AugmentConfig) -> tuple[np.ndarray, np.ndarray]:
    """Zoom out: place the image at a random spot of a pad-coloured canvas up to max_ratio larger."""
    if rng.random() >= cfg.expand_prob:
        return image, boxes_xyxy
    h, w = image.shape[:2]
    ratio = rng.uniform(1.0, cfg.expand_max_ratio)
    ch, cw = int(h * ratio), int(w * ratio)
    left, top = int(rng.uniform(0, cw - w)), int(rng.uniform(0, ch - h))
    canvas = crop_padded(image, -left, -top, cw, ch, cfg.pad_value)
    return canvas, (boxes_xyxy + np.array([left, top, left, top], np.float32)).astype(np.float32)


def resize_square(image: np.ndarray, boxes_xyxy: np.ndarray, size: int,
                  interpolation: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize (aspect not kept) to size x size; boxes scaled with it."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image, boxes_xyxy
    out = cv2.resize(image, (size, size), interpolation=interpolation)
    fx, fy = size / w, size / h
    return out, (boxes_xyxy * np.array([fx, fy, fx, fy], np.float32)).astype(np.float32)


def hflip(image: np.ndarray, boxes_xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left-right: x -> W - x."""
    w = image.shape[1]
    flipped = np.stack([w - boxes_xyxy[:, 2], boxes_xyxy[:, 1], w - boxes_xyxy[:, 0], boxes_xyxy[:, 3]],
                       axis=1)
    return np.ascontiguousarray(image[:, ::-1]), flipped.astype(np.float32)


def drop_small(boxes_xyxy: np.ndarray, min_face: float) -> np.ndarray:
    """Keep faces with positive sides and area >= min_face ** 2."""
    wh = boxes_xyxy[:, 2:] - boxes_xyxy[:, :2]
    keep = (wh > 0).all(axis=1) & (wh[:, 0] * wh[:, 1] >= min_face ** 2)
    return boxes_xyxy[keep]


class Augmenter:
    """The full §7 pipeline: ``aug(image_rgb_u8, boxes_xyxy_px, rng) -> (image, boxes) | None``.

    Output: uint8 [S, S, 3] RGB and boxes [n, 4] float32 normalised xyxy (n >= 1), or
    ``None`` when no face survives, the caller's signal to draw another image.
    ``rng`` defaults to the generator given at construction.
    """

    def __init__(self, cfg: AugmentConfig, rng: np.random.Generator | None = None):
        self.cfg, self.rng = cfg, rng

    def __call__(self, image: np.ndarray, boxes_xyxy: np.ndarray,
                 rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        rng = rng if rng is not None else self.rng
        if rng is None:
            raise ValueError("Augmenter needs a numpy Generator (at construction or per call)")
        cfg = self.cfg
        boxes = drop_small(np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4), 0.0)
        if len(boxes) == 0:
            return None
        image = photometric_distort(image, rng, cfg)
        if cfg.expand:
            image, boxes = expand_canvas(image, boxes, rng, cfg)
        if rng.random() < cfg.anchor_sampling_prob:
            image, boxes = data_anchor_sample(image, boxes, rng, cfg)
        else:
            image, boxes = ssd_square_crop(image, boxes, rng, cfg)
        interpolation = INTERPOLATIONS[rng.integers(len(INTERPOLATIONS))]
        image, boxes = resize_square(image, boxes, cfg.image_size, interpolation)
        if rng.random() < cfg.flip_prob:
            image, boxes = hflip(image, boxes)
        boxes = drop_small(boxes, cfg.min_face)
        if len(boxes) == 0:
            return None
        return image, (boxes / np.float32(cfg.image_size)).astype(np.float32)
