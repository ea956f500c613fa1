"""Augmentation (spec §7) on hand-made scenes: coloured rectangles with known boxes."""
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from dainet.data import augment as A
from dainet.params import ParamError, load_params

ROOT = Path(__file__).resolve().parents[1]
BACKGROUND = (128, 128, 128)
PALETTE = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255),
                    (255, 128, 0), (0, 0, 0)], dtype=np.float32)


@pytest.fixture(scope="module")
def cfg() -> A.AugmentConfig:
    return replace(A.AugmentConfig.from_params(load_params(ROOT / "params.yaml").section("augment")),
                   image_size=96)


def make_scene(rng, h=240, w=320, n=5, sides=(8, 80)):
    """Background plus ``n`` non-overlapping filled squares, each its own palette colour.

    Returns uint8 [h, w, 3] RGB and boxes [n, 4] xyxy pixels (continuous grid)."""
    image = np.empty((h, w, 3), np.uint8)
    image[:] = BACKGROUND
    boxes, taken = [], np.zeros((h, w), bool)
    while len(boxes) < n:
        s = int(rng.integers(sides[0], min(sides[1], min(h, w) // 3)))
        x, y = int(rng.integers(0, w - s)), int(rng.integers(0, h - s))
        if taken[max(0, y - 2):y + s + 2, max(0, x - 2):x + s + 2].any():
            continue
        taken[y:y + s, x:x + s] = True
        image[y:y + s, x:x + s] = PALETTE[len(boxes)]
        boxes.append([x, y, x + s, y + s])
    return image, np.array(boxes, np.float32)


def colour_of_box(image, box_xyxy):
    """(palette index or -1 for background, fraction of the box interior with that colour)."""
    x1, y1, x2, y2 = box_xyxy
    m = max(1.5, 0.2 * min(x2 - x1, y2 - y1))  # interpolation blurs the edges
    xs, xe = int(np.ceil(x1 + m)), int(np.floor(x2 - m))
    ys, ye = int(np.ceil(y1 + m)), int(np.floor(y2 - m))
    if xe <= xs or ye <= ys:
        cx, cy = int((x1 + x2) / 2), int((y1 + y2) / 2)
        xs, xe, ys, ye = cx, cx + 1, cy, cy + 1
    pix = image[ys:ye, xs:xe].reshape(-1, 3).astype(np.float32)
    refs = np.concatenate([PALETTE, np.float32([BACKGROUND])])
    nearest = np.argmin(((pix[:, None] - refs[None]) ** 2).sum(-1), axis=1)
    counts = np.bincount(nearest, minlength=len(refs))
    best = int(np.argmax(counts))
    return (best if best < len(PALETTE) else -1), counts[best] / len(pix)


def assert_on_colours(image, boxes_xyxy):
    for box in boxes_xyxy:
        idx, frac = colour_of_box(image, box)
        assert idx >= 0, f"box {box} lies on background"
        assert frac >= 0.9, f"box {box}: only {frac:.2f} of it is face colour {idx}"


# --- photometric ----------------------------------------------------------------------

def test_photometric_keeps_shape_dtype_and_changes_pixels(cfg):
    image, _ = make_scene(np.random.default_rng(0), 40, 50)
    outs = [A.photometric_distort(image, np.random.default_rng(s), cfg) for s in range(6)]
    for out in outs:
        assert out.shape == image.shape and out.dtype == np.uint8
    assert any(np.abs(o.astype(int) - image).max() > 10 for o in outs)
    still = A.photometric_distort(image, np.random.default_rng(0), replace(cfg, photometric_prob=0.0))
    np.testing.assert_array_equal(still, image)


def test_photometric_steps_math():
    img = np.array([[[100, 50, 200], [0, 0, 0], [250, 250, 250]]], np.uint8)
    f = img.astype(np.float64)
    np.testing.assert_allclose(A.adjust_brightness(img, 1.1), np.minimum(np.rint(f * 1.1), 255))
    grey = f @ [.299, .587, .114]
    np.testing.assert_allclose(A.adjust_saturation(img, 0.0), np.repeat(grey[..., None], 3, -1), atol=1)
    np.testing.assert_allclose(A.adjust_saturation(img, 1.5)[0, 0],
                               np.clip(grey[0, 0] + 1.5 * (f[0, 0] - grey[0, 0]), 0, 255), atol=1)
    np.testing.assert_allclose(A.adjust_contrast(img, 0.0), np.full_like(f, grey.mean()), atol=1)
    np.testing.assert_allclose(A.adjust_contrast(img, 2.0),
                               np.clip(grey.mean() + 2 * (f - grey.mean()), 0, 255), atol=1)
    assert A.adjust_brightness(img, 0.9).dtype == np.uint8
    np.testing.assert_allclose(A.shift_hue(img, 0.0), img, atol=4)    # HSV round trip in 8 bits
    np.testing.assert_allclose(A.shift_hue(img, 256.0), img, atol=4)  # a full turn is the identity
    red = np.array([[[255, 0, 0]]], np.uint8)
    shifted = A.shift_hue(red, 18.0)[0, 0].astype(int)   # 18/256 of a turn = 25 degrees
    assert shifted[0] == 255 and 90 < shifted[1] < 125 and shifted[2] < 5
    assert A.shift_hue(red, -18.0)[0, 0, 2] > 90            # the other way: towards magenta


# --- single geometric steps -------------------------------------------------------------

def test_hflip_mirrors_exactly():
    image, boxes = make_scene(np.random.default_rng(1), 60, 90, n=3)
    flipped, fboxes = A.hflip(image, boxes)
    np.testing.assert_array_equal(fboxes[:, [0, 2]], 90 - boxes[:, [2, 0]])
    np.testing.assert_array_equal(fboxes[:, [1, 3]], boxes[:, [1, 3]])
    np.testing.assert_array_equal(flipped[:, ::-1], image)
    assert_on_colours(flipped, fboxes)
    again, aboxes = A.hflip(flipped, fboxes)
    np.testing.assert_array_equal(again, image)
    np.testing.assert_array_equal(aboxes, boxes)


def test_crop_padded_fills_outside_with_pad():
    image = np.full((4, 5, 3), 7, np.uint8)
    out = A.crop_padded(image, -2, 3, 6, 3, (104, 117, 123))
    assert out.shape == (3, 6, 3)
    np.testing.assert_array_equal(out[0, 2:], 7)          # image row 3, columns 0..3
    np.testing.assert_array_equal(out[0, :2], [[104, 117, 123]] * 2)
    np.testing.assert_array_equal(out[1:], np.broadcast_to([104, 117, 123], (2, 6, 3)))


@pytest.mark.parametrize("interp", A.INTERPOLATIONS)
def test_scale_and_crop_matches_resize_then_crop(interp):
    image = np.random.default_rng(2).integers(0, 256, (30, 40, 3)).astype(np.uint8)
    out = A.scale_and_crop(image, 2.0, 10, 6, 32, interp, (0, 0, 0))
    ref = cv2.resize(image, (80, 60), interpolation=interp)[6:38, 10:42]
    if interp == cv2.INTER_AREA:  # warps treat AREA as LINEAR
        ref = cv2.resize(image, (80, 60), interpolation=cv2.INTER_LINEAR)[6:38, 10:42]
    assert np.abs(out.astype(int) - ref).mean() < 1.5
    small = A.scale_and_crop(image, 0.5, -3, -2, 32, interp, (9, 9, 9))
    np.testing.assert_array_equal(small[:2], 9)            # padding above the image
    np.testing.assert_array_equal(small[:, 23:], 9)       # right of the 20-pixel-wide image


def test_ssd_crop_is_square_and_keeps_faces_on_colour(cfg):
    for seed in range(25):
        rng = np.random.default_rng(seed)
        image, boxes = make_scene(rng, 200, 300, n=5, sides=(10, 50))
        out, oboxes = A.ssd_square_crop(image, boxes, rng, cfg)
        h, w = out.shape[:2]
        assert h == w and 0.3 * 200 - 1 <= h <= 200
        assert len(oboxes) >= 1
        assert (oboxes >= 0).all() and (oboxes <= h).all()
        assert_on_colours(out, oboxes)
        # at least one face survives whole (its side equals an input side)
        sides = np.round(oboxes[:, 2] - oboxes[:, 0], 3)
        assert np.isin(sides, np.round(boxes[:, 2] - boxes[:, 0], 3)).any()


def test_ssd_crop_without_valid_try_returns_input(cfg):
    image = np.zeros((100, 100, 3), np.uint8)
    boxes = np.float32([[0, 0, 100, 100]])  # no crop smaller than the image holds it
    out, oboxes = A.ssd_square_crop(image, boxes, np.random.default_rng(0), cfg)
    # a full-side crop (scale 1.0) is never drawn exactly, so nothing can contain the face
    assert out is image and oboxes is boxes


def test_anchor_sampling_rescales_the_face_to_an_anchor_scale(cfg):
    cfg = replace(cfg, image_size=128)
    scales = np.array(cfg.anchor_scales, float)
    sides = []
    for seed in range(30):
        rng = np.random.default_rng(seed)
        image = np.empty((200, 260, 3), np.uint8)
        image[:] = BACKGROUND
        image[60:72, 100:112] = PALETTE[0]  # one 12 x 12 face: nearest anchor 16, targets {16, 32}
        boxes = np.float32([[100, 60, 112, 72]])
        out, oboxes = A.data_anchor_sample(image, boxes, rng, cfg)
        assert out.shape == (128, 128, 3)
        assert len(oboxes) == 1  # the chosen face's centre is always inside
        sides.append(np.sqrt(np.prod(oboxes[0, 2:] - oboxes[0, :2])))
        assert_on_colours(out, oboxes)
    allowed = scales[:np.argmin(np.abs(scales - 12)) + 2]  # up to one step above the nearest
    # side = target * 2^u, u ~ U(-1, 1); at most 64 < 128, so never clipped
    assert allowed.min() / 2 - 0.5 <= min(sides) and max(sides) <= allowed.max() * 2 + 0.5
    assert max(sides) > allowed.max()  # both targets and the 2^u spread are used


def test_anchor_sampling_pads_small_images(cfg):
    cfg = replace(cfg, image_size=128, anchor_scales=(16,))
    image = np.full((40, 40, 3), 200, np.uint8)
    image[10:26, 10:26] = PALETTE[2]
    out, oboxes = A.data_anchor_sample(image, np.float32([[10, 10, 26, 26]]), np.random.default_rng(3), cfg)
    assert out.shape == (128, 128, 3)
    pad = np.all(out == np.uint8(cfg.pad_value), axis=-1).mean()
    assert pad > 0.5  # a 16..32-pixel-scaled 40-pixel image leaves most of the crop padded
    assert_on_colours(out, oboxes)


def test_expand_keeps_boxes_on_colour(cfg):
    cfg = replace(cfg, expand=True, expand_prob=1.0)
    image, boxes = make_scene(np.random.default_rng(4), 60, 80, n=3, sides=(8, 20))
    out, oboxes = A.expand_canvas(image, boxes, np.random.default_rng(5), cfg)
    assert out.shape[0] >= 60 and out.shape[1] >= 80
    assert_on_colours(out, oboxes)


def test_resize_square_scales_boxes_per_axis():
    image, boxes = make_scene(np.random.default_rng(6), 90, 200, n=4, sides=(12, 30))
    out, oboxes = A.resize_square(image, boxes, 64, cv2.INTER_LINEAR)
    assert out.shape == (64, 64, 3)
    np.testing.assert_allclose(oboxes, boxes * np.float32([64 / 200, 64 / 90, 64 / 200, 64 / 90]), rtol=1e-6)
    assert_on_colours(out, oboxes)


def test_drop_small_uses_area():
    boxes = np.float32([[0, 0, 6, 6], [0, 0, 5.9, 6], [0, 0, 3, 12], [0, 0, 12, 0]])
    np.testing.assert_array_equal(A.drop_small(boxes, 6.0), boxes[[0, 2]])


# --- full pipeline ----------------------------------------------------------------------

def test_pipeline_many_seeds_boxes_stay_on_their_faces(cfg):
    cfg = replace(cfg, photometric_prob=0.0)  # keep colours recognisable
    aug = A.Augmenter(cfg)
    n_out = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        image, boxes = make_scene(rng, 180 + seed, 260, n=6, sides=(6, 70))
        out = aug(image, boxes, rng)
        if out is None:
            continue
        n_out += 1
        img, nboxes = out
        assert img.shape == (96, 96, 3) and img.dtype == np.uint8
        assert nboxes.dtype == np.float32 and nboxes.shape[1] == 4
        assert (nboxes >= 0).all() and (nboxes <= 1).all()
        px = nboxes * 96
        assert (np.prod(px[:, 2:] - px[:, :2], axis=1) >= cfg.min_face ** 2 - 1e-3).all()
        assert_on_colours(img, px)
    assert n_out >= 30


def test_pipeline_with_photometric_is_seed_deterministic(cfg):
    image, boxes = make_scene(np.random.default_rng(7), 120, 160, n=4, sides=(10, 40))
    a = A.Augmenter(cfg, np.random.default_rng(11))(image, boxes)
    b = A.Augmenter(cfg)(image, boxes, np.random.default_rng(11))
    c = A.Augmenter(cfg)(image, boxes, np.random.default_rng(12))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_pipeline_returns_none_when_every_face_is_too_small(cfg):
    cfg = replace(cfg, anchor_sampling_prob=0.0)  # SSD crop of >= 300 px to 96 px: 3-px faces vanish
    image = np.full((1000, 1000, 3), 90, np.uint8)
    boxes = np.float32([[100, 100, 103, 103], [500, 500, 503, 503]])
    for seed in range(5):
        assert A.Augmenter(cfg)(image, boxes, np.random.default_rng(seed)) is None
    assert A.Augmenter(cfg)(image, np.zeros((0, 4), np.float32), np.random.default_rng(0)) is None


def test_config_rejects_bad_probability(tmp_path):
    text = (ROOT / "params.yaml").read_text().replace("flip_prob: 0.5", "flip_prob: 1.5")
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ParamError, match=r"augment.flip_prob"):
        A.AugmentConfig.from_params(load_params(tmp_path / "params.yaml").section("augment"))
