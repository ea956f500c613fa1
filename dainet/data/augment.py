"""Training augmentation of spec §7 (DSFD / PyramidBox style), numpy + OpenCV (+ Pillow).

Images are uint8 ``[H, W, 3]`` RGB; boxes are ``[n, 4]`` float32 xyxy in pixels of the
current image, on the continuous pixel grid (a box covering columns 0..9 is x1=0, x2=10).
The pipeline (:class:`Augmenter`)::

    photometric distortion -> (optional zoom-out expansion)
    -> data-anchor-sampling (p) | SSD square crop (1 - p)
    -> resize to S x S (random interpolation) -> horizontal flip -> drop faces < min_face^2

and returns the S x S uint8 image with boxes normalised xyxy, or ``None`` when no face
is left (the dataset then draws another image).

Where the reference (DAI-Net's ``utils/augmentations.py``) and our preferred behaviour
differ, an ``augment`` param chooses; ``params/wider.yaml`` (paper profile) holds the
reference's value, ``params.yaml`` (sample profile) ours:

* ``ssd_crop_full_sampler`` / ``ssd_crop_samplers``: the reference runs five samplers,
  one fixed at scale 1.0 and four at U(0.3, 1), each keeping its first valid try, and
  crops with a random one of those that succeeded (so the full-side square is chosen
  about one time in five); ours is one U(0.3, 1) sampler.
* ``anchor_face_plus_one``: the reference measures the chosen face as (w + 1)(h + 1) for
  its anchor scale and its crop range; ours w * h on the continuous grid.
* ``anchor_valid``: a crop try is valid when some face centre is inside (ours,
  ``centre``), or when some face lies fully inside or has IoU > ``anchor_valid_iou``
  with the S x S window (the reference, ``contained_or_iou``; its IoU has no +1).
* ``anchor_pad``: ``all_sides`` pads wherever the S x S window leaves the scaled image;
  ``top_left`` (the reference) pads only above and left and truncates the window at the
  right and bottom image edges, so the final resize stretches the smaller crop.
* ``anchor_fallback``: when no try is valid, ``original`` keeps the input image; the
  reference (``rescaled``) keeps the rescaled image, resampled twice on the way to S x S.
* ``anchor_clip_boxes``: we clip kept boxes to the crop after anchor sampling, so each
  box describes visible pixels; the reference does not (it clips after the SSD crop,
  as we always do).
* ``resize_filters``: the final resize draws one of five filters: ``cv2`` (LINEAR,
  CUBIC, AREA, NEAREST, LANCZOS4; all but AREA alias when shrinking), ``cv2_antialias``
  (the same draw, but shrinking is done by ``INTER_AREA`` first) or ``pil`` (the
  reference: Pillow's BILINEAR, HAMMING, NEAREST, BICUBIC, LANCZOS, which all but
  NEAREST antialias when shrinking).
* ``hue_rounding``: the hue shift is rounded (ours) or truncated toward zero per pixel
  (``truncate``, the reference's float-to-uint8 cast); both wrap around 256.
* ``min_face_filter``: ``final`` drops faces of area < min_face^2 once, after the final
  resize; ``reference`` filters where the reference does: anchor-sampled boxes keep
  area > min_face^2 in the pixels of the crop (or of the rescaled image) before the final
  resize, SSD-cropped boxes keep area >= min_face^2 after it, and when no SSD crop is
  valid no face is dropped.

Other choices where the spec leaves room (each is what the reference does unless noted):

* Anchor sampling scales and crops in one step (``cv2.warpAffine`` with a constant
  border) when enlarging, so a tiny face blown up 30x never materialises a 30x image;
  the reference instead caps the scale at 12000^2 pixels. Shrinking uses ``cv2.resize``
  on the whole image (cheap, and keeps ``INTER_AREA`` anti-aliasing, which warps lack;
  when enlarging, ``cv2.warpAffine`` treats ``INTER_AREA`` as ``INTER_LINEAR``).
* The pad colour ``pad_value`` is applied in RGB order as listed.
* Of the tries of one sampler (anchor offsets or SSD crops) the first valid one is used;
  the reference keeps a random valid one for anchor sampling, which has the same
  distribution (iid tries).
* Faces are kept when their centre is strictly inside the crop (the reference's SSD
  crop also keeps centres exactly on its edge).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from dainet.params import ParamError

# The reference's random filters for the anchor-sampling rescale (cv2), and the cv2 set
# our ``resize_filters: cv2 | cv2_antialias`` draw from for the final resize.
INTERPOLATIONS = (cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA, cv2.INTER_NEAREST,
                  cv2.INTER_LANCZOS4)
# The reference's final-resize filters (Pillow), drawn with the same index.
_PIL = getattr(Image, "Resampling", Image)
PIL_FILTERS = (_PIL.BILINEAR, _PIL.HAMMING, _PIL.NEAREST, _PIL.BICUBIC, _PIL.LANCZOS)

RESIZE_FILTERS = ("cv2", "cv2_antialias", "pil")
ANCHOR_VALID = ("centre", "contained_or_iou")
ANCHOR_PAD = ("all_sides", "top_left")
ANCHOR_FALLBACK = ("original", "rescaled")
HUE_ROUNDING = ("round", "truncate")
MIN_FACE_FILTER = ("final", "reference")


@dataclass(frozen=True)
class AugmentConfig:
    """The ``augment`` params section (spec §7). ``params/wider.yaml`` holds the reference's
    value of each reference-or-ours choice, ``params.yaml`` ours; see the module docstring."""
    image_size: int                          # S, side of the square training image
    photometric_prob: float
    brightness_delta: float                  # factor ~ U(1 - delta, 1 + delta)
    contrast_range: tuple[float, float]
    saturation_range: tuple[float, float]
    hue_delta: float                         # shift ~ U(-delta, delta) on the 0-255 hue scale
    anchor_sampling_prob: float
    anchor_scales: tuple[int, ...]           # sorted ascending (__post_init__)
    crop_tries: int
    pad_value: tuple[float, float, float]    # RGB, 0-255 scale
    ssd_crop_min_scale: float                # crop side / shorter image side ~ U(min, 1)
    flip_prob: float
    min_face: float                          # faces below min_face x min_face (area) are dropped
    expand: bool
    expand_prob: float                       # only used when expand is on
    expand_max_ratio: float
    hue_rounding: str                        # round | truncate (reference)
    anchor_face_plus_one: bool               # chosen face measured as (w + 1)(h + 1) (reference)
    anchor_valid: str                        # centre | contained_or_iou (reference)
    anchor_valid_iou: float                  # IoU with the S x S window for contained_or_iou
    anchor_pad: str                          # all_sides | top_left (reference: stretch the rest)
    anchor_fallback: str                     # no valid try: original | rescaled (reference)
    anchor_clip_boxes: bool                  # reference: false
    ssd_crop_samplers: int                   # U(ssd_crop_min_scale, 1) samplers (reference 4)
    ssd_crop_full_sampler: bool              # one more sampler fixed at scale 1.0 (reference)
    resize_filters: str                      # cv2 | cv2_antialias | pil (reference)
    min_face_filter: str                     # final | reference

    def __post_init__(self):
        object.__setattr__(self, "anchor_scales", tuple(sorted(self.anchor_scales)))
        if self.ssd_crop_samplers + self.ssd_crop_full_sampler < 1:
            raise ParamError("ssd_crop_samplers: expected at least one SSD crop sampler "
                             "(ssd_crop_samplers + ssd_crop_full_sampler >= 1), got "
                             f"{self.ssd_crop_samplers} and {str(self.ssd_crop_full_sampler).lower()}")


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


def shift_hue(img: np.ndarray, delta: float, rounding: str = "round") -> np.ndarray:
    """Rotate hue by ``delta`` on the 0-255 hue scale, wrapping around 256.

    ``round``: every pixel moves by round(delta). ``truncate``: each hue h becomes
    trunc(h + delta), as the reference's float-to-uint8 cast does; that is h + floor(delta)
    where h + delta >= 0 and h + ceil(delta) below 0, before wrapping.
    """
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV_FULL)  # _FULL: hue on 0-255, as PIL's HSV
    if rounding == "truncate":
        hue = np.trunc(hsv[..., 0] + float(delta)).astype(np.int16)
    else:
        hue = hsv[..., 0].astype(np.int16) + int(round(delta))
    hsv[..., 0] = hue % 256
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
        "hue": lambda x: shift_hue(x, rng.uniform(-cfg.hue_delta, cfg.hue_delta), cfg.hue_rounding),
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


def keep_centred_in(boxes_xyxy: np.ndarray, x0: float, y0: float, x1: float, y1: float,
                    clip: bool = True) -> np.ndarray:
    """Boxes whose centre lies strictly inside the window, moved to its origin (and clipped to it)."""
    cx = (boxes_xyxy[:, 0] + boxes_xyxy[:, 2]) / 2
    cy = (boxes_xyxy[:, 1] + boxes_xyxy[:, 3]) / 2
    inside = (cx > x0) & (cx < x1) & (cy > y0) & (cy < y1)
    kept = boxes_xyxy[inside]
    if clip:
        kept = np.clip(kept, [x0, y0, x0, y0], [x1, y1, x1, y1])
    return (kept - np.array([x0, y0, x0, y0], np.float32)).astype(np.float32)


def scale_and_crop(image: np.ndarray, scale: float, x0: int, y0: int, size, interpolation: int,
                   pad, blend_edges: bool = True) -> np.ndarray:
    """The window at (x0, y0) of ``image`` resized by ``scale``, padded outside.

    ``size`` is the window's side, or its ``(width, height)``. When enlarging, the warp
    blends the pixels at the image's edge with the pad; ``blend_edges=False`` instead
    keeps them as ``cv2.resize`` would (replicated border) and pads outside
    round(scale * w) x round(scale * h), as resizing first and padding afterwards does.
    """
    cw, ch = (size, size) if np.isscalar(size) else size
    h, w = image.shape[:2]
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    if scale <= 1.0:
        small = cv2.resize(image, (sw, sh), interpolation=interpolation)
        return crop_padded(small, x0, y0, cw, ch, pad)
    # Pixel centres map as cv2.resize does: dst + 0.5 = scale * (src + 0.5), shifted by the crop.
    m = np.array([[scale, 0, 0.5 * scale - 0.5 - x0], [0, scale, 0.5 * scale - 0.5 - y0]])
    if blend_edges:
        return cv2.warpAffine(image, m, (cw, ch), flags=interpolation, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=tuple(float(v) for v in pad))
    out = cv2.warpAffine(image, m, (cw, ch), flags=interpolation, borderMode=cv2.BORDER_REPLICATE)
    inside = crop_padded(np.ones((sh, sw, 1), bool), x0, y0, cw, ch, (0,))[..., 0]
    out[~inside] = np.asarray(pad, dtype=np.float64).round().astype(out.dtype)
    return out


def box_window_iou(boxes_xyxy: np.ndarray, x0: np.ndarray, y0: np.ndarray, size: float) -> np.ndarray:
    """IoU ``[tries, n]`` of each box with each window [x0, x0 + size) x [y0, y0 + size) (no +1)."""
    b = boxes_xyxy[None]                                                 # [1, n, 4]
    x0_, y0_ = x0[:, None], y0[:, None]                                  # [tries, 1]
    iw = np.clip(np.minimum(b[..., 2], x0_ + size) - np.maximum(b[..., 0], x0_), 0, None)
    ih = np.clip(np.minimum(b[..., 3], y0_ + size) - np.maximum(b[..., 1], y0_), 0, None)
    inter = iw * ih
    return inter / (box_areas(boxes_xyxy)[None] + size * size - inter)


def anchor_tries_valid(boxes_xyxy: np.ndarray, x0: np.ndarray, y0: np.ndarray, size: float,
                       rule: str = "centre", iou: float = 0.7) -> np.ndarray:
    """Which size x size windows at (x0, y0) ``[tries]`` are valid anchor-sampling crops.

    ``centre``: some face centre lies strictly inside. ``contained_or_iou`` (the
    reference): some face lies fully inside, or has IoU > ``iou`` with the window.
    """
    x0_, y0_ = x0[:, None], y0[:, None]                                  # [tries, 1]
    b = boxes_xyxy[None]                                                 # [1, n, 4]
    if rule == "contained_or_iou":
        contained = ((b[..., 0] >= x0_) & (b[..., 1] >= y0_) & (b[..., 2] <= x0_ + size)
                     & (b[..., 3] <= y0_ + size))
        return (contained | (box_window_iou(boxes_xyxy, x0, y0, size) > iou)).any(axis=1)
    cx, cy = (b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2
    return ((cx > x0_) & (cx < x0_ + size) & (cy > y0_) & (cy < y0_ + size)).any(axis=1)


def data_anchor_sample(image: np.ndarray, boxes_xyxy: np.ndarray, rng: np.random.Generator,
                       cfg: AugmentConfig) -> tuple[np.ndarray, np.ndarray]:
    """PyramidBox data-anchor-sampling: rescale one random face to a random anchor scale, crop S x S.

    Returns the crop and the boxes (xyxy pixels of the crop) centred in it. The crop is
    S x S, or with ``anchor_pad: top_left`` cut at the right and bottom edges of the scaled
    image. When no try is valid, the input image (``anchor_fallback: original``) or the
    rescaled image (``rescaled``) comes back with all its boxes.
    """
    scales = np.asarray(cfg.anchor_scales, dtype=np.float64)
    size = cfg.image_size
    face = rng.integers(len(boxes_xyxy))
    # (w + 1)(h + 1) when asked: +1 on x2, y2 in the pixels each is measured in, as the reference.
    plus = np.float32([0, 0, 1, 1]) if cfg.anchor_face_plus_one else np.zeros(4, np.float32)
    side = float(np.sqrt(box_areas(boxes_xyxy[face:face + 1] + plus)[0]))
    nearest = int(np.argmin(np.abs(scales - side)))
    target = scales[rng.integers(min(nearest + 1, len(scales) - 1) + 1)]  # up to one step above
    scale = target / side * 2.0 ** rng.uniform(-1, 1)
    interpolation = INTERPOLATIONS[rng.integers(len(INTERPOLATIONS))]

    h, w = image.shape[0] * scale, image.shape[1] * scale
    fx0, fy0, fx1, fy1 = boxes_xyxy[face] * scale + plus
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
    valid = anchor_tries_valid(scaled, x0, y0, size, cfg.anchor_valid, cfg.anchor_valid_iou)
    sw, sh = max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))  # cv2.resize's
    if not valid.any():
        if cfg.anchor_fallback == "original":
            return image, boxes_xyxy
        return cv2.resize(image, (sw, sh), interpolation=interpolation), scaled.astype(np.float32)
    t = int(np.argmax(valid))
    x0, y0 = int(x0[t]), int(y0[t])
    cw, ch = size, size
    if cfg.anchor_pad == "top_left":  # cut where the scaled image ends (x0 < sw unless a box leaves it)
        cw, ch = max(1, min(size, sw - x0)), max(1, min(size, sh - y0))
    # Padding only above and left is the reference's resize-then-pad: no pad blends into the edges.
    crop = scale_and_crop(image, scale, x0, y0, (cw, ch), interpolation, cfg.pad_value,
                          blend_edges=cfg.anchor_pad == "all_sides")
    # Centres are tested against the whole S x S window, as the reference does.
    kept = keep_centred_in(scaled.astype(np.float32), x0, y0, x0 + size, y0 + size,
                           clip=cfg.anchor_clip_boxes)
    if cfg.anchor_clip_boxes and (cw, ch) != (size, size):
        kept = np.minimum(kept, np.float32([cw, ch, cw, ch]))
    return crop, kept


def ssd_crop_window(boxes_xyxy: np.ndarray, h: int, w: int, rng: np.random.Generator,
                     cfg: AugmentConfig) -> tuple[int, int, int] | None:
    """(x0, y0, side) of the SSD square crop, or None when no sampler found a valid try.

    Samplers: one fixed at scale 1.0 (``ssd_crop_full_sampler``) and ``ssd_crop_samplers``
    at U(min_scale, 1); each keeps its first valid try; one successful sampler is drawn.
    """
    n = cfg.crop_tries
    lows = [1.0] * cfg.ssd_crop_full_sampler + [cfg.ssd_crop_min_scale] * cfg.ssd_crop_samplers
    k = len(lows)
    side = np.maximum(1, np.floor(rng.uniform(np.array(lows)[:, None], 1.0, size=(k, n)) * min(h, w)))
    x0 = np.floor(rng.uniform(0, 1, size=(k, n)) * (w - side))           # [samplers, tries]
    y0 = np.floor(rng.uniform(0, 1, size=(k, n)) * (h - side))
    b = boxes_xyxy[None, None]                                           # [1, 1, n_faces, 4]
    x0_, y0_, s_ = x0[..., None], y0[..., None], side[..., None]         # [samplers, tries, 1]
    contains = ((b[..., 0] >= x0_) & (b[..., 1] >= y0_)
                & (b[..., 2] <= x0_ + s_) & (b[..., 3] <= y0_ + s_))     # [samplers, tries, n_faces]
    valid = contains.any(axis=2)
    found = np.flatnonzero(valid.any(axis=1))
    if len(found) == 0:
        return None
    pick = int(found[rng.integers(len(found))]) if len(found) > 1 else int(found[0])
    t = int(np.argmax(valid[pick]))
    return int(x0[pick, t]), int(y0[pick, t]), int(side[pick, t])


def ssd_square_crop(image: np.ndarray, boxes_xyxy: np.ndarray, rng: np.random.Generator,
                    cfg: AugmentConfig) -> tuple[np.ndarray, np.ndarray] | None:
    """Square crop, side ~ U(min_scale, 1) x shorter side (or exactly it), fully containing >= 1 face.

    Faces with centres inside are kept (clipped). None when no try succeeds.
    """
    window = ssd_crop_window(boxes_xyxy, image.shape[0], image.shape[1], rng, cfg)
    if window is None:
        return None
    x0, y0, s = window
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


def _scale_boxes(boxes_xyxy: np.ndarray, fx: float, fy: float) -> np.ndarray:
    return (boxes_xyxy * np.array([fx, fy, fx, fy], np.float32)).astype(np.float32)


def resize_square(image: np.ndarray, boxes_xyxy: np.ndarray, size: int,
                  interpolation: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize (aspect not kept) to size x size with a cv2 filter; boxes scaled with it."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image, boxes_xyxy
    out = cv2.resize(image, (size, size), interpolation=interpolation)
    return out, _scale_boxes(boxes_xyxy, size / w, size / h)


def resize_square_filtered(image: np.ndarray, boxes_xyxy: np.ndarray, size: int, filters: str,
                           index: int) -> tuple[np.ndarray, np.ndarray]:
    """The final resize to size x size with filter ``index`` of the set ``filters``.

    ``cv2``: ``INTERPOLATIONS[index]``. ``cv2_antialias``: axes that shrink are first
    reduced by ``INTER_AREA`` (an average over each output pixel's footprint), then
    ``INTERPOLATIONS[index]`` enlarges what is left. ``pil``: Pillow with
    ``PIL_FILTERS[index]``, whose filters widen with the shrink factor.
    """
    h, w = image.shape[:2]
    if (h, w) == (size, size) or filters == "cv2":
        return resize_square(image, boxes_xyxy, size, INTERPOLATIONS[index])
    if filters == "pil":
        out = np.array(Image.fromarray(np.ascontiguousarray(image)).resize((size, size),
                                                                          resample=PIL_FILTERS[index]))
    else:
        out = image
        if w > size or h > size:
            out = cv2.resize(out, (min(w, size), min(h, size)), interpolation=cv2.INTER_AREA)
        if out.shape[:2] != (size, size):
            out = cv2.resize(out, (size, size), interpolation=INTERPOLATIONS[index])
    return out, _scale_boxes(boxes_xyxy, size / w, size / h)


def hflip(image: np.ndarray, boxes_xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left-right: x -> W - x."""
    w = image.shape[1]
    flipped = np.stack([w - boxes_xyxy[:, 2], boxes_xyxy[:, 1], w - boxes_xyxy[:, 0], boxes_xyxy[:, 3]],
                       axis=1)
    return np.ascontiguousarray(image[:, ::-1]), flipped.astype(np.float32)


def drop_small(boxes_xyxy: np.ndarray, min_face: float, strict: bool = False) -> np.ndarray:
    """Keep faces with positive sides and area >= min_face ** 2 (> with ``strict``)."""
    wh = boxes_xyxy[:, 2:] - boxes_xyxy[:, :2]
    area = wh[:, 0] * wh[:, 1]
    big = area > min_face ** 2 if strict else area >= min_face ** 2
    return boxes_xyxy[(wh > 0).all(axis=1) & big]


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
        filter_final = True  # min_face_filter: final; reference filters where the reference does
        if rng.random() < cfg.anchor_sampling_prob:
            image, boxes = data_anchor_sample(image, boxes, rng, cfg)
            if cfg.min_face_filter == "reference":  # in the crop's pixels, before the stretch
                boxes, filter_final = drop_small(boxes, cfg.min_face, strict=True), False
        else:
            cropped = ssd_square_crop(image, boxes, rng, cfg)
            if cropped is not None:
                image, boxes = cropped
            elif cfg.min_face_filter == "reference":  # no valid crop: the reference keeps every face
                filter_final = False
        index = int(rng.integers(len(INTERPOLATIONS)))
        image, boxes = resize_square_filtered(image, boxes, cfg.image_size, cfg.resize_filters, index)
        if rng.random() < cfg.flip_prob:
            image, boxes = hflip(image, boxes)
        if filter_final:
            boxes = drop_small(boxes, cfg.min_face)
        if len(boxes) == 0:
            return None
        return image, (boxes / np.float32(cfg.image_size)).astype(np.float32)
