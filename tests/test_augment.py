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
    return replace(load_params(ROOT / "params.yaml").section("augment").load(A.AugmentConfig),
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


def test_ssd_crop_without_valid_try_is_none(cfg):
    image = np.zeros((100, 100, 3), np.uint8)
    boxes = np.float32([[0, 0, 100, 100]])  # no crop smaller than the image holds it
    # a full-side crop (scale 1.0) is never drawn exactly, so nothing can contain the face
    assert A.ssd_square_crop(image, boxes, np.random.default_rng(0), cfg) is None


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
        load_params(tmp_path / "params.yaml").section("augment").load(A.AugmentConfig)


# --- reference behaviour vs ours (each choice is an `augment` param; see the module docstring)

# The paper profile's values (params/wider.yaml) and ours (params.yaml).
REFERENCE = dict(hue_rounding="truncate", anchor_face_plus_one=True, anchor_valid="contained_or_iou",
                 anchor_pad="top_left", anchor_fallback="rescaled", anchor_clip_boxes=False,
                 ssd_crop_samplers=4, ssd_crop_full_sampler=True, resize_filters="pil",
                 min_face_filter="reference")
OURS = dict(hue_rounding="round", anchor_face_plus_one=False, anchor_valid="centre",
            anchor_pad="all_sides", anchor_fallback="original", anchor_clip_boxes=True,
            ssd_crop_samplers=1, ssd_crop_full_sampler=False, resize_filters="cv2", min_face_filter="final")


@pytest.fixture(scope="module")
def ref(cfg) -> A.AugmentConfig:
    return replace(cfg, **REFERENCE)


def test_profiles_hold_ours_in_sample_and_the_reference_in_paper():
    sample = load_params(ROOT / "params.yaml").section("augment")
    paper = load_params(ROOT / "params" / "wider.yaml").section("augment")
    assert list(sample.keys()) == list(paper.keys())
    s, p = sample.load(A.AugmentConfig), paper.load(A.AugmentConfig)
    assert {k: getattr(s, k) for k in OURS} == OURS
    assert {k: getattr(p, k) for k in REFERENCE} == REFERENCE
    assert s.anchor_valid_iou == p.anchor_valid_iou == 0.7


def test_config_rejects_unknown_choice(tmp_path):
    text = (ROOT / "params.yaml").read_text().replace("anchor_pad: all_sides", "anchor_pad: bottom")
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ParamError, match=r"augment.anchor_pad"):
        load_params(tmp_path / "params.yaml").section("augment").load(A.AugmentConfig)


def test_ssd_crop_reference_samplers_pick_the_full_side_one_time_in_five(cfg, ref):
    image = np.zeros((100, 160, 3), np.uint8)
    boxes = np.float32([[75, 45, 85, 55]])  # every sampler finds a crop holding it within 50 tries

    def full_side_share(c):
        return np.mean([A.ssd_square_crop(image, boxes, np.random.default_rng(s), c)[0].shape[0] == 100
                        for s in range(500)])

    assert full_side_share(cfg) == 0.0              # ours: U(0.3, 1) x 100 never reaches 100
    assert 0.14 < full_side_share(ref) < 0.26       # 1 of 5 successful samplers (sd 0.018)
    # a face only the full-side square holds: the reference crops it, ours gives up
    whole = np.float32([[30, 0, 130, 100]])
    out, oboxes = A.ssd_square_crop(image, whole, np.random.default_rng(0), ref)
    assert out.shape == (100, 100, 3) and oboxes.shape == (1, 4)
    assert A.ssd_square_crop(image, whole, np.random.default_rng(0), cfg) is None


def test_anchor_validity_centre_vs_contained_or_iou():
    x0 = y0 = np.zeros(1)
    cases = {  # box: (valid by centre, valid by contained_or_iou)
        (10, 10, 30, 30): (True, True),      # fully inside
        (-20, 10, 22, 30): (True, False),    # centre inside, about half outside, IoU 0.13
        (-5, -5, 70, 70): (True, True),      # larger than the window, IoU 64^2 / 75^2 = 0.73
        (-10, -10, 74, 74): (True, False),   # IoU 64^2 / 84^2 = 0.58
        (-30, 10, -2, 30): (False, False),   # outside
    }
    for box, (centre, reference) in cases.items():
        b = np.float32([box])
        assert A.anchor_tries_valid(b, x0, y0, 64, "centre")[0] == centre, box
        assert A.anchor_tries_valid(b, x0, y0, 64, "contained_or_iou", 0.7)[0] == reference, box
    assert A.anchor_tries_valid(np.float32([[-10, -10, 74, 74]]), x0, y0, 64, "contained_or_iou", 0.5)[0]
    # any face of the image makes the try valid, one result per try
    two = np.float32([[-20, 10, 22, 30], [40, 40, 50, 50]])
    np.testing.assert_array_equal(A.anchor_tries_valid(two, np.float32([0, 36]), np.float32([0, 36]), 16,
                                                       "contained_or_iou"), [False, True])


def big_face_scene():
    """One 100-pixel face that anchor scale 512 always blows up beyond a 128 crop (256..1024 px)."""
    image = np.full((300, 300, 3), BACKGROUND, np.uint8)
    image[100:200, 100:200] = PALETTE[1]
    return image, np.float32([[100, 100, 200, 200]])


def test_anchor_validity_rejects_crops_inside_a_big_face_in_reference_mode(cfg):
    cfg = replace(cfg, image_size=128, anchor_scales=(512,))
    image, boxes = big_face_scene()
    ours = [A.data_anchor_sample(image, boxes, np.random.default_rng(s), cfg)[0] for s in range(20)]
    assert sum(o.shape == (128, 128, 3) for o in ours) >= 10  # the face centre lands in most crops
    ref = replace(cfg, anchor_valid="contained_or_iou")       # IoU <= 128^2 / 256^2: never valid
    for s in range(20):
        out, oboxes = A.data_anchor_sample(image, boxes, np.random.default_rng(s), ref)
        assert out is image and oboxes is boxes


def test_anchor_fallback_keeps_the_original_or_the_rescaled_image(cfg):
    cfg = replace(cfg, image_size=128, anchor_scales=(512,), anchor_valid="contained_or_iou")
    image, boxes = big_face_scene()
    rescaled = replace(cfg, anchor_fallback="rescaled")
    for s in range(4):
        out, oboxes = A.data_anchor_sample(image, boxes, np.random.default_rng(s), rescaled)
        k = (oboxes[0, 2] - oboxes[0, 0]) / 100                     # the drawn scale, 2.56 .. 10.24
        assert 2.5 < k < 10.3
        np.testing.assert_allclose(oboxes, boxes * k, rtol=1e-5)
        assert out.shape == (round(300 * k), round(300 * k), 3)
        assert_on_colours(out, oboxes)
        assert A.data_anchor_sample(image, boxes, np.random.default_rng(s), cfg)[0] is image


def test_anchor_boxes_clipped_to_the_crop_or_not(cfg):
    cfg = replace(cfg, image_size=128, anchor_scales=(512,))  # crops inside the face
    image, boxes = big_face_scene()
    beyond = 0
    for s in range(10):
        out, clipped = A.data_anchor_sample(image, boxes, np.random.default_rng(s), cfg)
        _, raw = A.data_anchor_sample(image, boxes, np.random.default_rng(s),
                                      replace(cfg, anchor_clip_boxes=False))
        if out is image:
            continue
        np.testing.assert_array_equal(clipped, [[0, 0, 128, 128]])
        assert (raw[0, :2] <= 0).all() and (raw[0, 2:] >= 128).all()
        beyond += bool((raw[0, :2] < -1).any() or (raw[0, 2:] > 129).any())
        np.testing.assert_array_equal(np.clip(raw, 0, 128), clipped)
    assert beyond >= 5


def test_anchor_padding_all_sides_or_top_left_only(cfg):
    cfg = replace(cfg, image_size=128, anchor_scales=(16,))  # a 40-pixel image scaled to 20..80 px
    image = np.full((40, 40, 3), 200, np.uint8)
    image[10:26, 10:26] = PALETTE[2]
    boxes = np.float32([[10, 10, 26, 26]])
    pad = np.uint8(cfg.pad_value)
    right_padded, cut = 0, 0
    for s in range(20):
        out, oboxes = A.data_anchor_sample(image, boxes, np.random.default_rng(s), cfg)
        assert out.shape == (128, 128, 3)
        right_padded += bool(np.all(out[:, -1] == pad, axis=-1).all())
        assert_on_colours(out, oboxes)
        out, oboxes = A.data_anchor_sample(image, boxes, np.random.default_rng(s),
                                           replace(cfg, anchor_pad="top_left"))
        h, w = out.shape[:2]
        cut += (h, w) != (128, 128)
        assert h <= 128 and w <= 128
        # pad only above and left: along the bottom row and right column it is a leading run only,
        # and the bottom-right pixel is image (the crop ends where the scaled image ends)
        for edge in (out[-1], out[:, -1]):
            is_pad = np.all(edge == pad, axis=-1)
            np.testing.assert_array_equal(is_pad, np.arange(len(is_pad)) < is_pad.sum())
        np.testing.assert_array_equal(out[-1, -1], 200)  # image background, no pad blended in
        assert np.all(out[0] == pad, axis=-1).all() or np.all(out[:, 0] == pad, axis=-1).all()
        assert_on_colours(out, oboxes)
        # the final resize stretches the cut crop and its boxes with it
        big, bboxes = A.resize_square_filtered(out, oboxes, 128, "cv2", 0)
        np.testing.assert_allclose(bboxes, oboxes * np.float32([128 / w, 128 / h, 128 / w, 128 / h]))
        assert_on_colours(big, bboxes)
    assert right_padded >= 15 and cut >= 15


@pytest.mark.parametrize("interp", A.INTERPOLATIONS)
def test_scale_and_crop_without_edge_blending_is_resize_then_pad(interp):
    image = np.random.default_rng(8).integers(0, 256, (30, 40, 3)).astype(np.uint8)
    out = A.scale_and_crop(image, 2.0, -5, -3, (60, 50), interp, (9, 9, 9), blend_edges=False)
    big = cv2.resize(image, (80, 60), interpolation=cv2.INTER_LINEAR if interp == cv2.INTER_AREA else interp)
    np.testing.assert_array_equal(out[:3], 9)
    np.testing.assert_array_equal(out[:, :5], 9)
    assert np.abs(out[3:, 5:].astype(int) - big[:47, :55]).mean() < 1.5
    cut = A.scale_and_crop(image, 2.0, 30, 20, (50, 40), interp, (9, 9, 9), blend_edges=False)
    assert np.abs(cut.astype(int) - big[20:, 30:]).max() <= (255 if interp == cv2.INTER_NEAREST else 64)
    assert np.abs(cut[:, -1].astype(int) - big[20:, -1]).mean() < 3  # the edge column is image, not pad


def checkerboard(h, w):
    y, x = np.mgrid[:h, :w]
    return np.repeat((((x + y) % 2) * 255).astype(np.uint8)[..., None], 3, axis=-1)


def test_final_resize_antialiases_when_shrinking(cfg):
    image, boxes = checkerboard(240, 240), np.float32([[0, 0, 120, 60]])
    std = {m: [float(A.resize_square_filtered(image, boxes, 56, m, i)[0].std()) for i in range(5)]
           for m in A.RESIZE_FILTERS}  # 4.3x: a 1-pixel checkerboard should become flat grey
    assert std["cv2"][3] > 100 and std["cv2"][0] > 30 and std["cv2"][2] < 5  # only INTER_AREA averages
    assert max(std["cv2_antialias"]) < 5
    assert max(std["pil"][:2] + std["pil"][3:]) < 5 and std["pil"][2] > 100  # PIL NEAREST aliases too
    for m in A.RESIZE_FILTERS:
        out, oboxes = A.resize_square_filtered(image, boxes, 56, m, 1)
        assert out.shape == (56, 56, 3) and out.dtype == np.uint8 and abs(out.mean() - 127.5) < 2
        np.testing.assert_allclose(oboxes, boxes * np.float32(56 / 240))
    # one axis shrinking, the other growing: cv2's INTER_AREA falls back to interpolation
    strip = checkerboard(40, 240)
    assert A.resize_square_filtered(strip, boxes, 56, "cv2", 2)[0].std() > 50
    assert max(A.resize_square_filtered(strip, boxes, 56, "cv2_antialias", i)[0].std() for i in range(5)) < 10
    # the pipeline's final resize uses the chosen set
    base = replace(cfg, photometric_prob=0.0, anchor_sampling_prob=0.0, image_size=24, min_face=0.0)
    stds = {m: [A.Augmenter(replace(base, resize_filters=m))(image, boxes, np.random.default_rng(s))[0].std()
                for s in range(10)] for m in ("cv2", "cv2_antialias")}
    assert max(stds["cv2"]) > 40 and max(stds["cv2_antialias"]) < 15


def test_hue_rounding_or_truncation():
    g = np.arange(0, 256, 3, dtype=np.uint8)
    img = np.stack([np.full_like(g, 255), g, np.zeros_like(g)], axis=-1)[None]  # hues 0 .. 42
    hue = cv2.cvtColor(img, cv2.COLOR_RGB2HSV_FULL)[0, :, 0].astype(int)
    assert hue[0] == 0 and (hue[1:] >= 1).all()
    same, up, down = A.shift_hue(img, 0.0), A.shift_hue(img, 1.0), A.shift_hue(img, -1.0)
    np.testing.assert_array_equal(A.shift_hue(img, 0.6, "round"), up)
    np.testing.assert_array_equal(A.shift_hue(img, 0.6, "truncate"), same)      # trunc(h + 0.6) = h
    np.testing.assert_array_equal(A.shift_hue(img, -0.6, "round"), down)
    t = A.shift_hue(img, -0.6, "truncate")                                      # toward zero: 0 stays 0
    np.testing.assert_array_equal(t[0, 1:], down[0, 1:])
    np.testing.assert_array_equal(t[0, 0], same[0, 0])
    # h = 1, delta = -2.5: trunc(-1.5) = -1, wrapped to 255 (rounding would give -2 -> 254)
    one = int(np.flatnonzero(hue == 1)[0])
    np.testing.assert_array_equal(A.shift_hue(img, -2.5, "truncate")[0, one], A.shift_hue(img, -1.0)[0, one])
    np.testing.assert_array_equal(A.shift_hue(img, -2.5, "round")[0, one], A.shift_hue(img, -2.0)[0, one])


def test_photometric_distort_uses_the_hue_rounding(cfg):
    g = np.arange(3, 256, 3, dtype=np.uint8)  # hues >= 1: truncation is h + floor(delta)
    img = np.stack([np.full_like(g, 255), g, np.zeros_like(g)], axis=-1)[None]
    only_hue = replace(cfg, photometric_prob=1.0, brightness_delta=0.0, contrast_range=(1.0, 1.0),
                       saturation_range=(1.0, 1.0), hue_delta=0.9)
    shifts = {A.shift_hue(img, float(d)).tobytes(): d for d in (-1, 0, 1)}
    for rounding, allowed in (("truncate", {-1, 0}), ("round", {-1, 0, 1})):
        seen = {shifts[A.photometric_distort(img, np.random.default_rng(s),
                                             replace(only_hue, hue_rounding=rounding)).tobytes()]
                for s in range(30)}
        assert seen == allowed, rounding


def test_drop_small_strict():
    boxes = np.float32([[0, 0, 6, 6], [0, 0, 6.01, 6], [0, 0, 3, 12], [0, 0, 4, 9.5]])
    np.testing.assert_array_equal(A.drop_small(boxes, 6.0), boxes[[0, 1, 2, 3]])
    np.testing.assert_array_equal(A.drop_small(boxes, 6.0, strict=True), boxes[[1, 3]])


def test_min_face_reference_filters_the_anchor_crop_before_the_stretch(cfg, monkeypatch):
    size = 96
    crop = np.full((48, 96, 3), 90, np.uint8)  # a cut crop, stretched 2x vertically by the resize
    faces = np.float32([[0, 0, 6, 6], [20, 20, 27, 27], [50, 10, 52, 12]])
    monkeypatch.setattr(A, "data_anchor_sample", lambda image, boxes, rng, c: (crop, faces))
    base = replace(cfg, image_size=size, anchor_sampling_prob=1.0, photometric_prob=0.0, flip_prob=0.0)
    image = np.zeros((100, 100, 3), np.uint8)

    def kept(c):
        return np.round(A.Augmenter(c)(image, faces, np.random.default_rng(0))[1] * size, 3)

    # ours: in final pixels, area >= 36: 6 x 12 and 7 x 14 stay, 2 x 4 goes
    np.testing.assert_allclose(kept(base), [[0, 0, 6, 12], [20, 40, 27, 54]])
    # the reference: in crop pixels and strict, so the 6 x 6 face goes before it is stretched
    np.testing.assert_allclose(kept(replace(base, min_face_filter="reference")), [[20, 40, 27, 54]])


def test_min_face_reference_keeps_every_face_when_no_ssd_crop_is_valid(cfg):
    c = replace(cfg, image_size=96, anchor_sampling_prob=0.0, photometric_prob=0.0, flip_prob=0.0)
    image = np.zeros((100, 100, 3), np.uint8)
    boxes = np.float32([[0, 0, 100, 50], [97, 60, 100, 63]])  # no square of < 100 px holds either
    final = A.Augmenter(c)(image, boxes, np.random.default_rng(0))[1]
    reference = A.Augmenter(replace(c, min_face_filter="reference"))(image, boxes,
                                                                      np.random.default_rng(0))[1]
    assert len(final) == 1 and len(reference) == 2  # a 2.9-pixel face survives in the reference


def test_min_face_reference_keeps_area_equal_to_min_after_an_ssd_crop(cfg, monkeypatch):
    c = replace(cfg, image_size=96, anchor_sampling_prob=0.0, photometric_prob=0.0, flip_prob=0.0,
                min_face_filter="reference")
    monkeypatch.setattr(A, "ssd_crop_window", lambda boxes, h, w, rng, cfg: (0, 0, 96))  # no resize
    faces = np.float32([[10, 10, 16, 16], [30, 30, 35.9, 36], [50, 50, 60, 60]])
    kept = A.Augmenter(c)(np.zeros((96, 96, 3), np.uint8), faces, np.random.default_rng(0))[1] * 96
    np.testing.assert_allclose(kept, faces[[0, 2]], atol=1e-4)  # the 6 x 6 face stays (>=), as ours


def test_anchor_face_plus_one_measures_the_face_as_w_plus_1_by_h_plus_1(cfg):
    cfg = replace(cfg, image_size=128, anchor_scales=(16,), anchor_clip_boxes=False)
    image = np.full((200, 260, 3), BACKGROUND, np.uint8)
    boxes = np.float32([[100, 60, 112, 72]])  # 12 x 12: scale 16 / 12 x 2^u, or 16 / 13 x 2^u
    for s in range(10):
        ours = A.data_anchor_sample(image, boxes, np.random.default_rng(s), cfg)[1]
        plus = A.data_anchor_sample(image, boxes, np.random.default_rng(s),
                                    replace(cfg, anchor_face_plus_one=True))[1]
        side = lambda b: b[0, 2] - b[0, 0]  # noqa: E731
        assert side(ours) / side(plus) == pytest.approx(13 / 12, rel=1e-5)
