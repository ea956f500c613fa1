"""Synthetic face scenes for the embedded sample data (stage ``sample``).

A scene is a textured background with clutter, non-face distractors (plain blobs,
skin-coloured patches), and face-like objects: a skin-toned head ellipse with hair,
eyes, brows, nose and mouth, optionally glasses or a hat, on a body; rotated in
plane, squashed for yaw, sometimes blurred or partly covered by an occluder. Each
face's box is the tight integer box of its head ellipse (what WIDER annotators mark),
with WIDER attribute labels (blur, expression, occlusion, pose).

Drawing uses OpenCV primitives with sub-pixel coordinates (``shift``) and
anti-aliasing; per-pixel work (backgrounds, masks, noise, darkening) is numpy.
All randomness comes from the ``rng`` passed in, so a seed fixes the output.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_SHIFT = 4                      # cv2 fixed-point bits: coordinates in 1/16 pixel
_SCALE = 1 << _SHIFT
_AA = cv2.LINE_AA

# Face anatomy in head-ellipse units (u across, v down; the ellipse is u² + v² = 1).
_EYE_UV = (0.38, -0.08)         # eye centre (±u, v)
_EYE_AXES = (0.18, 0.09)        # eye half-width, half-height
_BROW_UV = ((0.14, -0.30), (0.58, -0.34))
_NOSE_UV = ((0.0, -0.02), (0.06, 0.24), (-0.08, 0.26))
_MOUTH_UV = (0.0, 0.50)
_MOUTH_AXES = (0.32, 0.10)
_HEAD_ASPECT = (0.70, 0.86)     # head half-width / half-height
_MAX_ROLL_DEG = 40.0            # in-plane rotation range ±
_MAX_YAW = 0.7                  # yaw in [-1, 1] units: features shift, head narrows
_POSE_ROLL_DEG = 30.0           # WIDER "atypical pose" above this roll ...
_POSE_YAW = 0.5                 # ... or this yaw
_BLUR_SIGMA = (0.015, 0.08)     # blur sigma as a fraction of the face height
_HEAVY_BLUR = 0.04              # sigma fraction from which blur is labelled heavy (2)
_OCCLUSION_LEVELS = (0.02, 0.3)  # covered fraction: below -> 0, up to -> 1, above -> 2
_MAX_OCCLUSION = 0.7            # faces covered more than this are left unannotated
_PLACE_TRIES = 30               # rejection-sampling tries to place a face without overlap
_GROW = 1.6                     # face boxes grown by this for the no-overlap test (hair, hat)
_SKIN_LIGHT = np.array([244, 208, 180], np.float64)   # RGB ends of the skin tone range
_SKIN_DARK = np.array([86, 54, 38], np.float64)


@dataclass(frozen=True)
class SceneConfig:
    """What one scene may contain (params ``sample.*``)."""
    image_side: tuple[int, int]           # side range (each side), pixels
    faces_per_image: tuple[int, int]
    face_size: tuple[float, float]        # face height range, pixels, log-uniform
    zero_face_fraction: float
    distractors: tuple[int, int]
    occlusion_prob: float
    blur_prob: float


@dataclass
class Scene:
    image: np.ndarray          # [H, W, 3] uint8 RGB
    boxes_xywh: np.ndarray     # [n, 4] int64 pixels, tight box of each head ellipse
    attributes: np.ndarray     # [n, 6] int64 WIDER labels (blur expression illumination invalid occlusion pose)


@dataclass
class Faces:
    """Geometry and looks of the n faces of a scene; every field is an [n] (or [n, 3]) array."""
    cx: np.ndarray
    cy: np.ndarray
    a: np.ndarray              # head half-width, pixels (after yaw squash)
    b: np.ndarray              # head half-height, pixels
    roll: np.ndarray           # in-plane rotation, degrees (clockwise on screen)
    yaw: np.ndarray            # [-1, 1]
    skin: np.ndarray           # [n, 3] RGB
    hair: np.ndarray           # [n, 3] RGB
    cloth: np.ndarray          # [n, 3] RGB
    hair_style: np.ndarray     # 0 bald, 1 short, 2 long
    glasses: np.ndarray        # bool
    hat: np.ndarray            # bool
    mouth_open: np.ndarray     # bool (expression label)

    def __len__(self) -> int:
        return len(self.cx)


# ---------------------------------------------------------------- geometry

def ellipse_boxes_xywh(cx, cy, a, b, roll_deg) -> np.ndarray:
    """Tight integer boxes [n, 4] (xywh pixels) of ellipses with half-axes a (along the
    rotated x axis), b, rotated by ``roll_deg``: floor of the min, ceil of the max corner."""
    t = np.deg2rad(roll_deg)
    half_w = np.sqrt((a * np.cos(t)) ** 2 + (b * np.sin(t)) ** 2)
    half_h = np.sqrt((a * np.sin(t)) ** 2 + (b * np.cos(t)) ** 2)
    x1, y1 = np.floor(cx - half_w), np.floor(cy - half_h)
    x2, y2 = np.ceil(cx + half_w), np.ceil(cy + half_h)
    return np.stack([x1, y1, x2 - x1, y2 - y1], axis=-1).astype(np.int64)


def _to_image(faces: Faces, i: int, uv) -> np.ndarray:
    """Head-frame points uv [..., 2] of face i -> image pixels [..., 2]; yaw shifts
    the features sideways and compresses the far side."""
    uv = np.asarray(uv, np.float64)
    u, v = uv[..., 0], uv[..., 1]
    yaw = faces.yaw[i]
    u = (u + 0.35 * yaw) * (1.0 - 0.3 * abs(yaw) * (np.sign(u) == np.sign(yaw)))
    x, y = u * faces.a[i], v * faces.b[i]
    t = np.deg2rad(faces.roll[i])
    return np.stack([faces.cx[i] + x * np.cos(t) - y * np.sin(t),
                     faces.cy[i] + x * np.sin(t) + y * np.cos(t)], axis=-1)


def _fx(p) -> tuple[int, ...]:
    """Pixel coordinates -> cv2 fixed-point integers."""
    return tuple(int(round(float(c) * _SCALE)) for c in np.ravel(p))


def _colour(c) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(np.round(c), 0, 255))


def _ellipse(img, centre, axes, angle, colour, thickness=-1, arc=(0, 360)):
    cv2.ellipse(img, _fx(centre), _fx(np.maximum(axes, 0.0)), float(angle), arc[0], arc[1],
                _colour(colour), thickness, _AA, _SHIFT)


def _polyline(img, pts, colour, thickness, closed=False):
    pts = np.round(np.asarray(pts) * _SCALE).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(img, [pts], closed, _colour(colour), max(1, int(round(thickness))), _AA, _SHIFT)


def _fill_poly(img, pts, colour):
    pts = np.round(np.asarray(pts) * _SCALE).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(img, [pts], _colour(colour), _AA, _SHIFT)


# ---------------------------------------------------------------- background and clutter

def render_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """[H, W, 3] uint8 RGB: a colour gradient, low-frequency texture, optional stripes,
    clutter shapes and fine noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    ramp = xx * np.cos(theta) + yy * np.sin(theta)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
    c0, c1 = random_colours(rng, 2).astype(np.float32)
    img = c0 + ramp[..., None] * (c1 - c0)

    # low-frequency texture: a coarse random grid, upsampled smoothly
    coarse = rng.uniform(-1, 1, (rng.integers(3, 12), rng.integers(3, 12), 3)).astype(np.float32)
    img += rng.uniform(10, 50) * cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)

    if rng.random() < 0.4:      # stripes (fabric, fences, blinds)
        phi, period = rng.uniform(0, np.pi), rng.uniform(6, 60)
        wave = np.sin(2 * np.pi * (xx * np.cos(phi) + yy * np.sin(phi)) / period) > 0
        img = np.where(wave[..., None], img * rng.uniform(0.6, 0.9), img)

    canvas = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(3, 14)):
        _clutter_shape(canvas, rng)
    noise = rng.normal(0, rng.uniform(1, 6), canvas.shape).astype(np.float32)
    return np.clip(canvas + noise, 0, 255).astype(np.uint8)


def random_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """[n, 3] RGB colours of random saturation (mostly muted, as in photographs)."""
    c = rng.uniform(0, 255, (n, 3))
    grey = c.mean(axis=1, keepdims=True)
    return grey + rng.uniform(0.15, 1.0, (n, 1)) * (c - grey)


def _clutter_shape(canvas: np.ndarray, rng: np.random.Generator) -> None:
    """One box, disc, line or polygon of up to a third of the image side."""
    h, w = canvas.shape[:2]
    colour = random_colours(rng, 1)[0]
    centre = rng.uniform((0, 0), (w, h))
    extent = rng.uniform(0.03, 0.35) * min(h, w)
    kind = rng.integers(4)
    if kind == 0:
        p = centre + rng.uniform(-extent, extent, (2, 2))
        cv2.rectangle(canvas, _fx(p[0]), _fx(p[1]), _colour(colour), -1, _AA, _SHIFT)
    elif kind == 1:
        cv2.circle(canvas, _fx(centre), int(extent / 2 * _SCALE), _colour(colour), -1, _AA, _SHIFT)
    elif kind == 2:
        _polyline(canvas, centre + rng.uniform(-2 * extent, 2 * extent, (2, 2)), colour,
                  rng.uniform(1, 6))
    else:
        _fill_poly(canvas, centre + rng.uniform(-extent, extent, (rng.integers(3, 7), 2)), colour)


def skin_tone(rng: np.random.Generator, n: int) -> np.ndarray:
    """[n, 3] RGB skin colours from light to dark, with a little hue jitter."""
    t = rng.uniform(0, 1, (n, 1))
    return (1 - t) * _SKIN_LIGHT + t * _SKIN_DARK + rng.normal(0, 8, (n, 3))


def draw_distractors(canvas: np.ndarray, rng: np.random.Generator, count: int,
                     size_range: tuple[float, float]) -> None:
    """Face-sized objects without face features: plain blobs, rings, balls and
    skin-coloured ellipses / patches (hard negatives for the detector)."""
    h, w = canvas.shape[:2]
    lo, hi = size_range[0], min(size_range[1], 0.6 * min(h, w))
    for _ in range(count):
        s = np.exp(rng.uniform(np.log(lo), np.log(max(hi, lo))))
        c = rng.uniform((0, 0), (w, h))
        axes = s / 2 * rng.uniform(0.5, 1.0, 2)
        angle = rng.uniform(0, 180)
        kind = rng.integers(4)
        colour = skin_tone(rng, 1)[0] if kind >= 2 else random_colours(rng, 1)[0]
        if kind == 0:                                   # ring
            _ellipse(canvas, c, axes, angle, colour, max(1, int(s / 12)))
        elif kind == 1:                                 # ball with a highlight
            _ellipse(canvas, c, axes, angle, colour)
            _ellipse(canvas, c - axes * 0.3, axes * 0.25, angle, np.minimum(colour + 80, 255))
        elif kind == 2:                                 # skin ellipse: a head without a face
            _ellipse(canvas, c, axes, angle, colour)
            _ellipse(canvas, c, axes * 0.8, angle, colour * 1.06)
        else:                                           # skin patch (hand, arm)
            k = rng.integers(5, 9)
            ang = np.sort(rng.uniform(0, 2 * np.pi, k))
            r = s / 2 * rng.uniform(0.4, 1.0, k)
            _fill_poly(canvas, c + np.stack([r * np.cos(ang), r * np.sin(ang)], 1), colour)


# ---------------------------------------------------------------- faces

def sample_faces(rng: np.random.Generator, height: int, width: int, cfg: SceneConfig) -> Faces:
    """Draw the number, sizes and looks of the faces of one scene and place them
    without overlapping (each face box grown by its hair/hat margin)."""
    if rng.random() < cfg.zero_face_fraction:
        n = 0
    else:
        n = int(rng.integers(cfg.faces_per_image[0], cfg.faces_per_image[1] + 1))
    lo, hi = cfg.face_size
    hi = max(lo, min(hi, 0.7 * min(height, width)))
    size = np.sort(np.exp(rng.uniform(np.log(lo), np.log(hi), n)))[::-1]   # big faces first
    yaw = rng.uniform(-_MAX_YAW, _MAX_YAW, n)
    b = size / 2
    a = b * rng.uniform(*_HEAD_ASPECT, n) * (1 - 0.25 * np.abs(yaw))
    roll = rng.uniform(-_MAX_ROLL_DEG, _MAX_ROLL_DEG, n)
    box = ellipse_boxes_xywh(0.0, 0.0, a, b, roll)          # [n, 4] around a centre at 0
    half = box[:, 2:] / 2 + 1

    placed, centres = [], np.zeros((n, 2))
    taken = np.zeros((0, 4))                                 # xyxy of placed faces, grown
    for i in range(n):
        lo_c, hi_c = half[i], np.array([width, height]) - half[i]
        if (hi_c <= lo_c).any():
            continue
        tries = rng.uniform(lo_c, hi_c, (_PLACE_TRIES, 2))
        grown = np.concatenate([tries - _GROW * half[i], tries + _GROW * half[i]], axis=1)
        free = ~((grown[:, None, :2] < taken[None, :, 2:]) & (grown[:, None, 2:] > taken[None, :, :2])
                 ).all(-1).any(-1)
        if free.any():
            k = int(np.argmax(free))
            centres[i] = tries[k]
            taken = np.concatenate([taken, grown[k:k + 1]])
            placed.append(i)
    keep = np.array(placed, np.int64)
    m = len(keep)
    return Faces(
        cx=centres[keep, 0], cy=centres[keep, 1], a=a[keep], b=b[keep], roll=roll[keep],
        yaw=yaw[keep], skin=skin_tone(rng, m),
        hair=rng.uniform(10, 90, (m, 1)) * rng.uniform(0.6, 1.4, (m, 3)),
        cloth=random_colours(rng, m), hair_style=rng.integers(0, 3, m),
        glasses=rng.random(m) < 0.15, hat=rng.random(m) < 0.12, mouth_open=rng.random(m) < 0.2)


def draw_body(canvas: np.ndarray, f: Faces, i: int) -> None:
    """Neck and shoulders below head i (drawn for every face before any head)."""
    neck = _to_image(f, i, [(-0.35, 0.7), (0.35, 0.7), (0.4, 1.35), (-0.4, 1.35)])
    _ellipse(canvas, _to_image(f, i, (0.0, 2.3)), (2.0 * f.a[i], 1.1 * f.b[i]), f.roll[i], f.cloth[i])
    _fill_poly(canvas, neck, f.skin[i] * 0.85)


def draw_head(canvas: np.ndarray, f: Faces, i: int) -> None:
    """Hair, head ellipse and face features of face i."""
    a, b, roll, skin, hair = f.a[i], f.b[i], f.roll[i], f.skin[i], f.hair[i]
    centre = np.array([f.cx[i], f.cy[i]])
    if f.hair_style[i] == 2:                                  # long hair behind the head
        _ellipse(canvas, _to_image(f, i, (0.0, 0.25)), (1.25 * a, 1.2 * b), roll, hair)
    elif f.hair_style[i] == 1:
        _ellipse(canvas, _to_image(f, i, (0.0, -0.12)), (1.1 * a, 0.98 * b), roll, hair)
    _ellipse(canvas, centre, (a, b), roll, skin * 0.9)        # darker rim gives some relief
    _ellipse(canvas, _to_image(f, i, (0.05 * f.yaw[i], -0.05)), (0.85 * a, 0.88 * b), roll, skin)
    if f.hair_style[i] > 0:                                   # fringe over the forehead
        _ellipse(canvas, _to_image(f, i, (0.0, -0.42)), (1.0 * a, 0.6 * b), roll, hair, arc=(180, 360))

    line = max(1.0, 0.05 * b)
    for side in (-1, 1):
        eye = _to_image(f, i, (side * _EYE_UV[0], _EYE_UV[1]))
        axes = np.array(_EYE_AXES) * (a, b) * (1 - 0.4 * max(0.0, side * f.yaw[i]))
        _ellipse(canvas, eye, axes, roll, (235, 235, 230))
        pupil = _to_image(f, i, (side * _EYE_UV[0] + 0.08 * f.yaw[i], _EYE_UV[1]))
        _ellipse(canvas, pupil, (axes[1], axes[1]), roll, (40, 30, 25))
        brow = _to_image(f, i, [(side * u, v) for u, v in _BROW_UV])
        _polyline(canvas, brow, hair, line)
        if f.glasses[i]:
            _ellipse(canvas, eye, axes * (1.5, 2.6), roll, (20, 20, 20), max(1, int(line / 2)))
    if f.glasses[i]:
        _polyline(canvas, _to_image(f, i, [(-0.2, -0.08), (0.2, -0.08)]), (20, 20, 20), line / 2)
    _polyline(canvas, _to_image(f, i, _NOSE_UV), skin * 0.7, line)
    m_axes = np.array(_MOUTH_AXES) * (a, b)
    if f.mouth_open[i]:
        _ellipse(canvas, _to_image(f, i, _MOUTH_UV), m_axes * (0.8, 1.8), roll, (90, 20, 30))
    else:                                                     # a smile: the lower arc
        smile = _to_image(f, i, (_MOUTH_UV[0], _MOUTH_UV[1] - 0.1))
        _ellipse(canvas, smile, m_axes, roll, (150, 60, 60), max(1, int(line)), arc=(10, 170))
    if f.hat[i]:
        crown = _to_image(f, i, [(-0.9, -0.55), (0.9, -0.55), (0.75, -1.5), (-0.75, -1.5)])
        _fill_poly(canvas, crown, f.cloth[i][::-1])
        _polyline(canvas, _to_image(f, i, [(-1.3, -0.55), (1.3, -0.55)]), f.cloth[i][::-1], 0.12 * b)


def _head_mask(shape, f: Faces, i: int, scale: float = 1.0, origin=(0, 0)) -> np.ndarray:
    """[h, w] uint8 mask (255 inside) of head i grown by ``scale``, for an image region
    of ``shape`` whose top-left pixel is ``origin`` (x, y)."""
    mask = np.zeros(shape[:2], np.uint8)
    centre = (f.cx[i] - origin[0], f.cy[i] - origin[1])
    cv2.ellipse(mask, _fx(centre), _fx((scale * f.a[i], scale * f.b[i])), float(f.roll[i]),
                0, 360, 255, -1, cv2.LINE_8, _SHIFT)
    return mask


def blur_face(canvas: np.ndarray, f: Faces, i: int, sigma: float) -> None:
    """Gaussian blur inside a feathered region around head i (defocus / motion)."""
    x, y, w, h = ellipse_boxes_xywh(f.cx[i], f.cy[i], 1.5 * f.a[i], 1.5 * f.b[i], f.roll[i])
    H, W = canvas.shape[:2]
    x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    roi = canvas[y1:y2, x1:x2]
    mask = cv2.GaussianBlur(_head_mask(roi.shape, f, i, 1.3, (x1, y1)).astype(np.float32) / 255,
                            (0, 0), max(1.0, sigma))[..., None]
    blurred = cv2.GaussianBlur(roi, (0, 0), sigma).astype(np.float32)
    roi[...] = np.round(mask * blurred + (1 - mask) * roi).astype(np.uint8)


def draw_occluder(canvas: np.ndarray, occluders: np.ndarray, rng: np.random.Generator,
                  f: Faces, i: int) -> None:
    """A random object (box, ellipse, polygon) over part of face i; its footprint goes
    into ``occluders`` ([H, W] uint8) so every face's covered fraction can be measured."""
    d = rng.uniform(0.5, 1.2)                    # centre distance from the face centre, in radii
    phi = rng.uniform(0, 2 * np.pi)
    c = np.array([f.cx[i] + d * f.a[i] * np.cos(phi), f.cy[i] + d * f.b[i] * np.sin(phi)])
    r = rng.uniform(0.5, 1.0, 2) * (f.a[i], f.b[i])
    angle = rng.uniform(0, 180)
    colour, inner = random_colours(rng, 2)
    kind = rng.integers(3)

    def shape(img, col, scale):
        if kind == 0:                             # a rotated box (sign, cup, phone)
            t = np.deg2rad(angle)
            rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
            _fill_poly(img, c + (np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * r * scale) @ rot.T, col)
        elif kind == 1:                           # a ball, a head from behind
            _ellipse(img, c, r * scale, angle, col)
        else:                                     # a hand-like polygon
            ang = np.linspace(0, 2 * np.pi, 7, endpoint=False) + phi
            _fill_poly(img, c + scale * np.stack([r[0] * np.cos(ang), r[1] * np.sin(ang)], 1), col)

    shape(canvas, colour, 1.0)
    shape(canvas, inner, 0.6)                     # two-tone, not a flat patch
    shape(occluders, (255, 255, 255), 1.0)


def covered_fraction(occluders: np.ndarray, f: Faces) -> np.ndarray:
    """[n] fraction of each head ellipse under an occluder."""
    out = np.zeros(len(f))
    for i in range(len(f)):
        head = _head_mask(occluders.shape, f, i) > 0
        out[i] = (occluders[head] > 0).mean() if head.any() else 0.0
    return out


def render_scene(rng: np.random.Generator, cfg: SceneConfig) -> Scene:
    """One image with its face boxes and WIDER attribute labels."""
    height, width = (int(v) for v in rng.integers(cfg.image_side[0], cfg.image_side[1] + 1, 2))
    canvas = render_background(rng, height, width)
    draw_distractors(canvas, rng, int(rng.integers(cfg.distractors[0], cfg.distractors[1] + 1)),
                     cfg.face_size)
    faces = sample_faces(rng, height, width, cfg)
    n = len(faces)
    sigma = np.where(rng.random(n) < cfg.blur_prob, rng.uniform(*_BLUR_SIGMA, n), 0.0)
    occluded = rng.random(n) < cfg.occlusion_prob
    for i in range(n):
        draw_body(canvas, faces, i)
    for i in range(n):
        draw_head(canvas, faces, i)
        if sigma[i] > 0:
            blur_face(canvas, faces, i, max(0.5, sigma[i] * 2 * faces.b[i]))
    occluders = np.zeros((height, width), np.uint8)
    for i in np.flatnonzero(occluded):
        draw_occluder(canvas, occluders, rng, faces, i)
    covered = covered_fraction(occluders, faces)

    attributes = np.zeros((n, 6), np.int64)
    attributes[:, 0] = np.where(sigma == 0, 0, np.where(sigma < _HEAVY_BLUR, 1, 2))
    attributes[:, 1] = faces.mouth_open
    attributes[:, 4] = np.digitize(covered, _OCCLUSION_LEVELS)
    attributes[:, 5] = (np.abs(faces.roll) > _POSE_ROLL_DEG) | (np.abs(faces.yaw) > _POSE_YAW)
    boxes = ellipse_boxes_xywh(faces.cx, faces.cy, faces.a, faces.b, faces.roll)
    # an occluder can hide nearly all of a face: such faces are not annotated
    visible = covered <= _MAX_OCCLUSION
    return Scene(canvas, boxes[visible], attributes[visible])


# ---------------------------------------------------------------- low light

@dataclass(frozen=True)
class LowLightConfig:
    """A camera-like night rendering (params ``sample.dark.*``), deliberately not the
    training-time DarkISP of spec §8."""
    exposure: tuple[float, float]     # linear-light scale, log-uniform
    gamma: tuple[float, float]        # display gamma
    shot_noise: tuple[float, float]   # Poisson gain (signal units per photon), log-uniform
    read_noise: tuple[float, float]   # Gaussian std, log-uniform
    colour_cast: float                # max per-channel gain deviation
    jpeg_quality: tuple[int, int]


def _log_uniform(rng: np.random.Generator, lo_hi) -> float:
    return float(np.exp(rng.uniform(np.log(lo_hi[0]), np.log(lo_hi[1]))))


def render_low_light(image: np.ndarray, rng: np.random.Generator, cfg: LowLightConfig) -> np.ndarray:
    """[H, W, 3] uint8 RGB -> a dark, noisy, colour-cast, JPEG-degraded uint8 RGB image:
    linearise with gamma, scale exposure and channel gains in linear light, sample
    Poisson photon counts plus Gaussian read noise, re-encode with gamma, quantise,
    then JPEG re-compress."""
    g = rng.uniform(*cfg.gamma)
    linear = (image.astype(np.float64) / 255.0) ** g
    gains = 1.0 + rng.uniform(-cfg.colour_cast, cfg.colour_cast, 3)
    signal = np.clip(linear * _log_uniform(rng, cfg.exposure) * gains, 0.0, 1.0)
    k = _log_uniform(rng, cfg.shot_noise)
    noisy = rng.poisson(signal / k) * k + rng.normal(0.0, _log_uniform(rng, cfg.read_noise), signal.shape)
    out = np.round(np.clip(noisy, 0.0, 1.0) ** (1.0 / g) * 255.0).astype(np.uint8)
    quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()
