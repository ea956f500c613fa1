"""Multi-scale test plan, flip-back, size filters, box voting, writers and image reading (spec §10)."""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest
from PIL import Image

from dainet.errors import UserError
from dainet.formats.images import ImageReadError, read_image
from dainet.formats.predictions import wider_prediction_text, write_darkface_prediction, write_wider_prediction
from dainet.inference import (
    MultiScaleConfig, ScalePass, box_vote, detect_at_scale, keep_by_size, max_shrink,
    multi_scale_detect, plan_passes,
)
from dainet.inference.multiscale import KEEP_ALL, KEEP_LARGE, KEEP_SMALL
from dainet.params import ParamError, Section
from helpers import paper_predict

SPEC = paper_predict()   # the spec §10 values


# ---------------------------------------------------------------- max_shrink

def test_max_shrink_small_image_is_capped():
    assert max_shrink(100, 100) == 3.0
    assert max_shrink(720, 1080) == 3.0                       # DARK FACE size: sqrt(13.8) > 3
    assert max_shrink(1000, 1000, cap=10.0) == pytest.approx(math.sqrt(2147483647 / 200 / 1e6))  # 3.2768


def test_max_shrink_huge_image():
    # 2147483647 / 200 / (5000 * 6000) = 0.35791394..., sqrt = 0.59825909...
    assert max_shrink(5000, 6000) == pytest.approx(0.5982590920, abs=1e-9)
    assert max_shrink(3000, 4000) == pytest.approx(0.9459306808, abs=1e-9)
    assert max_shrink(5000, 6000, factor=50) == pytest.approx(2 * 0.5982590920, abs=1e-9)


# ---------------------------------------------------------------- the pass plan

def _plan(h, w, cfg=SPEC):
    return [(p.shrink, p.flip, p.keep) for p in plan_passes(h, w, cfg)]


A, L, S = KEEP_ALL, KEEP_LARGE, KEEP_SMALL


def test_plan_for_a_normal_image_max_shrink_3():
    # ms = 3: origin, flip, 0.5, 0.75 | bt = 2, 1.5, (bt = 4 >= 3: no doubling) then 3 | pyramid all
    assert _plan(720, 1080) == [
        (1.0, False, A), (1.0, True, A), (0.5, False, L), (0.75, False, L),
        (2.0, False, S), (1.5, False, S), (3.0, False, S),
        (0.25, False, L), (1.25, False, S), (1.75, False, S), (2.25, False, S)]


def _side_for(ms):
    """Image side whose max_shrink (factor 200, no cap) is ``ms``."""
    return math.sqrt(2147483647 / 200 / ms ** 2)


@pytest.mark.parametrize("ms, enlarge, pyramid", [
    (2.5, [2.0, 1.5, 2.5], [0.25, 1.25, 1.75, 2.25]),   # ms > 2: after doubling, ms itself
    (1.6, [1.6, 1.5], [0.25, 1.25]),                     # 1.5 < ms <= 2: bt = ms, plus 1.5
    (1.2, [1.2], [0.25]),                                # 1 < ms <= 1.5: bt = ms only
])
def test_plan_for_intermediate_max_shrink(ms, enlarge, pyramid):
    cfg = paper_predict(max_shrink_cap=10.0)
    side = _side_for(ms)    # a non-integer side is fine for the formula
    assert max_shrink(side, side, cap=10.0) == pytest.approx(ms)
    plan = [(round(p.shrink, 9), p.flip, p.keep) for p in plan_passes(side, side, cfg)]
    want = ([(1.0, False, A), (1.0, True, A), (0.5, False, L), (0.75, False, L)]
            + [(round(s, 9), False, S) for s in enlarge]
            + [(s, False, L if s <= 1 else S) for s in pyramid])
    assert plan == want


def test_plan_doubling_loop_with_a_larger_cap():
    # ms = 10 (tiny image, cap 10): bt = 2, 1.5, then 4, 8 (< 10), then 10
    cfg = paper_predict(max_shrink_cap=10.0)
    enlarge = [p.shrink for p in plan_passes(32, 32, cfg) if p.keep == S and p.shrink not in cfg.pyramid_scales]
    assert enlarge == [2.0, 1.5, 4.0, 8.0, 10.0]


def test_plan_for_huge_images_below_shrink_1():
    ms = max_shrink(3000, 4000)                                   # 0.9459: 0.75 < ms < 1
    assert _plan(3000, 4000) == [
        (ms, False, A), (ms, True, A), (0.5, False, L), (0.75, False, L),
        ((0.5 + ms) / 2, False, L),                               # bt <= 1: keep large boxes
        (0.25, False, L)]
    ms = max_shrink(5000, 6000)                                   # 0.598 < 0.75: st = 0.5 * ms
    st = 0.5 * ms
    assert _plan(5000, 6000) == [
        (ms, False, A), (ms, True, A), (st, False, L), ((st + ms) / 2, False, L), (0.25, False, L)]


def test_plan_single_scale():
    assert plan_passes(720, 1080, paper_predict(single_scale=True)) == [ScalePass(1.0)]
    ms = max_shrink(5000, 6000)
    assert plan_passes(5000, 6000, paper_predict(single_scale=True)) == [ScalePass(ms)]


def test_config_from_params_and_validation():
    p = Section({"conf_thresh": 0.05, "nms_thresh": 0.3, "top_k": 5000, "keep_top_k": 750,
                 "vote_iou": 0.3, "max_shrink_cap": 3.0, "max_pixels_factor": 200, "min_side": 30,
                 "max_side": 100, "shrink_scales": [0.5, 0.75], "pyramid_scales": [0.25, 1.25, 1.75, 2.25],
                 "single_scale": False, "enlarge_factor": 2.0, "enlarge_extra": 1.5, "base_scale": 1.0,
                 "max_skipped_images": 0}, "predict", "params.yaml")
    assert p.load(MultiScaleConfig) == SPEC
    bad = Section({**p.to_dict(), "enlarge_factor": 1.0}, "predict", "params.yaml")
    with pytest.raises(ParamError, match=r"^params.yaml: predict.enlarge_factor: expected a number > 1, got 1.0$"):
        bad.load(MultiScaleConfig)
    bad = Section({**p.to_dict(), "shrink_scales": [0.5]}, "predict", "params.yaml")
    with pytest.raises(ParamError, match="predict.shrink_scales"):
        bad.load(MultiScaleConfig)
    # the schema is the one check: a direct construction outside it still plans a finite list
    assert len(plan_passes(640, 640, paper_predict(enlarge_factor=1.0))) < 20


# ---------------------------------------------------------------- size filters

def test_size_filters_use_plus_one_sides():
    dets = np.array([[0, 0, 29, 9, .9],     # w = 30, h = 10: larger side 30, not > 30
                     [0, 0, 30, 9, .9],     # w = 31: larger side 31 > 30
                     [0, 0, 99, 120, .9],   # smaller side 100, not < 100
                     [0, 0, 120, 98, .9]])  # smaller side 99 < 100
    np.testing.assert_array_equal(keep_by_size(dets, L, 30, 100), dets[[1, 2, 3]])
    np.testing.assert_array_equal(keep_by_size(dets, S, 30, 100), dets[[0, 1, 3]])
    np.testing.assert_array_equal(keep_by_size(dets, A, 30, 100), dets)


# ---------------------------------------------------------------- scaling and flip-back

def _square_image(h=48, w=64, box=(5, 10, 21, 30)):
    """Black image with a white rectangle covering columns [x1, x2) and rows [y1, y2)."""
    img = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = 255
    return img


def _bright_box_detector(calls=None, score=0.9):
    """A fake detector: the bounding box (continuous xyxy) of the pixels brighter than 0.5."""
    def detect(img):
        assert img.dtype == np.float32 and img.ndim == 3 and img.shape[2] == 3
        assert 0.0 <= img.min() and img.max() <= 1.0
        ys, xs = np.nonzero(img.mean(axis=2) > 0.5)
        out = (np.zeros((0, 5)) if len(xs) == 0 else
               np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1, score]], np.float32))
        if calls is not None:
            calls.append((img.shape[:2], out.copy()))
        return out
    return detect


def test_flip_pass_mirrors_boxes_back():
    img = _square_image()
    calls = []
    dets = detect_at_scale(img, 1.0, True, _bright_box_detector(calls))
    # the detector saw the square at columns [64 - 21, 64 - 5) = [43, 59)
    np.testing.assert_array_equal(calls[0][1][0, :4], [43, 10, 59, 30])
    np.testing.assert_allclose(dets, [[5, 10, 21, 30, 0.9]], rtol=1e-6)
    unflipped = detect_at_scale(img, 1.0, False, _bright_box_detector())
    np.testing.assert_allclose(unflipped, dets, rtol=1e-6)


def test_fixed_boxes_are_scaled_and_mirrored_in_original_pixels():
    img = np.zeros((48, 64, 3), np.uint8)
    fixed = lambda im: np.array([[10, 5, 30, 25, 0.8]])   # resized-image pixels
    np.testing.assert_allclose(detect_at_scale(img, 2.0, False, fixed), [[5, 2.5, 15, 12.5, 0.8]])
    np.testing.assert_allclose(detect_at_scale(img, 2.0, True, fixed), [[64 - 15, 2.5, 64 - 5, 12.5, 0.8]])
    # 63 x 0.5 = 31.5 -> cv2 makes 32 columns; mapping back uses 63/32, like the
    # reference's normalised-box x original-size, so a full-width box stays full width
    full = lambda im: np.array([[0, 0, im.shape[1], im.shape[0], 0.5]])
    out = detect_at_scale(np.zeros((31, 63, 3), np.uint8), 0.5, False, full)
    np.testing.assert_allclose(out, [[0, 0, 63, 31, 0.5]])


def test_enlarged_pass_finds_the_square_back_in_original_pixels():
    img = _square_image()
    dets = detect_at_scale(img, 2.0, False, _bright_box_detector())
    np.testing.assert_allclose(dets[0, :4], [5, 10, 21, 30], atol=0.5)


def test_multi_scale_detect_runs_every_planned_scale_and_votes():
    img = _square_image(h=64, w=96, box=(20, 10, 60, 52))    # 40 x 42: passes every size filter
    calls = []
    out = multi_scale_detect(img, _bright_box_detector(calls), SPEC)
    planned = plan_passes(64, 96, SPEC)
    assert len(calls) == len(planned) == 11
    want_shapes = [(round(64 * p.shrink), round(96 * p.shrink)) for p in planned]
    assert [c[0] for c in calls] == want_shapes
    assert out.shape == (1, 5)                                # 11 copies of one face vote into one box
    assert out[0, 4] == pytest.approx(0.9)
    np.testing.assert_allclose(out[0, :4], [20, 10, 60, 52], atol=1.0)


def test_multi_scale_detect_reuses_a_duplicated_scale_but_counts_its_boxes_twice():
    # cap 1 -> ms = 1: 0.75 is both a shrink-down pass and the enlarge pass bt = (0.5 + 1) / 2
    cfg = paper_predict(max_shrink_cap=1.0)
    assert [p.shrink for p in plan_passes(64, 96, cfg)] == [1.0, 1.0, 0.5, 0.75, 0.75, 0.25]
    shapes = []

    def only_at_075(img):        # a face (40 x 40 original px) seen at shrink 0.75 only
        shapes.append(img.shape[:2])
        return np.array([[15, 7.5, 45, 37.5, 0.7]]) if img.shape[:2] == (48, 72) else np.zeros((0, 5))

    out = multi_scale_detect(np.zeros((64, 96, 3), np.uint8), only_at_075, cfg)
    assert shapes.count((48, 72)) == 1                        # run once ...
    np.testing.assert_allclose(out, [[20, 10, 60, 50, 0.7]])  # ... yet two votes, as in the reference
    single = paper_predict(max_shrink_cap=1.0, single_scale=True)
    img = _square_image(h=64, w=96, box=(20, 10, 60, 52))
    np.testing.assert_allclose(multi_scale_detect(img, _bright_box_detector(), single),
                               [[20, 10, 60, 52, 0.9]], rtol=1e-6)


def test_multi_scale_detect_with_no_face_returns_empty():
    out = multi_scale_detect(np.zeros((40, 50, 3), np.uint8), _bright_box_detector(), SPEC)
    assert out.shape == (0, 5)


def test_multi_scale_detect_rejects_float_images():
    with pytest.raises(ValueError, match="uint8"):
        multi_scale_detect(np.zeros((8, 8, 3), np.float32), _bright_box_detector(), SPEC)


# ---------------------------------------------------------------- box voting

def _naive_vote(dets, iou_thresh, keep):
    """Straightforward one-box-at-a-time version of the same rule, for comparison."""
    dets = dets[np.argsort(-dets[:, 4], kind="stable")]
    alive = list(range(len(dets)))
    out = []
    while alive:
        seed = dets[alive[0]]
        members = []
        for i in alive:
            b = dets[i]
            iw = max(0.0, min(seed[2], b[2]) - max(seed[0], b[0]) + 1)
            ih = max(0.0, min(seed[3], b[3]) - max(seed[1], b[1]) + 1)
            inter = iw * ih
            union = ((seed[2] - seed[0] + 1) * (seed[3] - seed[1] + 1)
                     + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter)
            if inter / union >= iou_thresh:
                members.append(i)
        alive = [i for i in alive if i not in members]
        if len(members) > 1:
            m = dets[members]
            out.append(list((m[:, :4] * m[:, 4:]).sum(0) / m[:, 4].sum()) + [m[:, 4].max()])
    return np.array(out).reshape(-1, 5)[:keep]


def test_vote_two_clusters_and_a_dropped_singleton():
    dets = np.array([
        [200, 200, 209, 209, 0.95],   # singleton: highest score, yet dropped
        [0, 0, 9, 9, 0.9],            # cluster A (IoU 81 / 119 = 0.68)
        [1, 1, 10, 10, 0.6],
        [100, 100, 119, 119, 0.8],    # cluster B
        [102, 100, 121, 119, 0.4],
        [100, 103, 119, 122, 0.2],
    ])
    out = box_vote(dets, iou_thresh=0.3, keep=750)
    # A: x1 = (0*.9 + 1*.6) / 1.5 = 0.4, x2 = (9*.9 + 10*.6) / 1.5 = 9.4
    # B: x1 = (100*.8 + 102*.4 + 100*.2) / 1.4 = 140.8 / 1.4, x2 = (119*.8 + 121*.4 + 119*.2) / 1.4
    np.testing.assert_allclose(out, [
        [0.4, 0.4, 9.4, 9.4, 0.9],
        [140.8 / 1.4, 140.6 / 1.4, 167.4 / 1.4, 167.2 / 1.4, 0.8],
    ])


def test_vote_uses_plus_one_iou():
    # continuous IoU = 3 / 15 = 0.2 (< 0.3); +1 IoU = 8 / 24 = 0.33 (>= 0.3): they merge
    dets = np.array([[0, 0, 3, 3, 0.6], [2, 0, 5, 3, 0.2]])
    np.testing.assert_allclose(box_vote(dets, 0.3), [[0.5, 0, 3.5, 3, 0.6]])


def test_vote_threshold_is_inclusive():
    # +1 widths 13, offset 7: IoU = 78 / 260 = 0.3 exactly -> merged (>=)
    dets = np.array([[0, 0, 12, 12, 0.5], [7, 0, 19, 12, 0.5]])
    np.testing.assert_allclose(box_vote(dets, 0.3), [[3.5, 0, 15.5, 12, 0.5]])
    assert box_vote(dets, 0.3 + 1e-9).shape == (0, 5)


def test_vote_keep_and_empty_input():
    clusters = np.concatenate([[[x, 0, x + 9, 9, s], [x, 1, x + 9, 10, s / 2]]
                               for x, s in [(0, .5), (50, .9), (100, .7)]])
    out = box_vote(clusters, 0.3, keep=2)
    np.testing.assert_allclose(out[:, 4], [0.9, 0.7])
    assert box_vote(np.zeros((0, 5))).shape == (0, 5)


def test_vote_matches_naive_rule_on_random_boxes():
    rng = np.random.default_rng(0)
    centres = rng.uniform(0, 300, (40, 2))
    n = 600
    c = centres[rng.integers(0, 40, n)] + rng.normal(0, 4, (n, 2))
    size = rng.uniform(6, 60, (n, 1))
    dets = np.concatenate([c - size / 2, c + size / 2, rng.uniform(0.05, 1, (n, 1))], axis=1)
    for keep in (750, 7):
        np.testing.assert_allclose(box_vote(dets, 0.3, keep), _naive_vote(dets, 0.3, keep))


# ---------------------------------------------------------------- writers

def _parse_wider(text):
    lines = text.splitlines()
    n = int(lines[1])
    rows = np.array([[float(v) for v in ln.split()] for ln in lines[2:]]).reshape(-1, 5)
    assert len(rows) == n
    return lines[0], rows


def test_wider_writer_round_trip(tmp_path):
    dets = np.array([[10.25, 20.5, 40.125, 60.0, 0.987654321], [0, 0, 9, 19, 0.05]])
    path = write_wider_prediction(tmp_path, "0--Parade", "0_Parade_marchingband_1_20.jpg", dets)
    assert path == tmp_path / "0--Parade" / "0_Parade_marchingband_1_20.txt"
    name, rows = _parse_wider(path.read_text())
    assert name == "0_Parade_marchingband_1_20"
    # x y w h with w = x2 - x1 + 1 (reference convention)
    np.testing.assert_allclose(rows, [[10.25, 20.5, 30.875, 40.5, 0.987654], [0, 0, 10, 20, 0.05]], atol=1e-6)
    back_x2 = rows[:, 0] + rows[:, 2] - 1
    np.testing.assert_allclose(back_x2, dets[:, 2], atol=1e-3)


def test_wider_writer_empty_image(tmp_path):
    path = write_wider_prediction(tmp_path, "1--Handshaking", "img.jpg", np.zeros((0, 5)))
    assert path.read_text() == "img\n0\n"
    assert wider_prediction_text("a.jpg", []) == "a\n0\n"
    with pytest.raises(ValueError, match="folder"):
        write_wider_prediction(tmp_path, "a/b", "img.jpg", [])


def test_darkface_writer_round_trip(tmp_path):
    dets = np.array([[1.5, 2.25, 30.0, 40.75, 0.5], [100, 200, 150.5, 260, 0.123456789]])
    path = write_darkface_prediction(tmp_path, "12.png", dets)
    assert path == tmp_path / "12.txt"
    rows = np.loadtxt(path, ndmin=2)
    np.testing.assert_allclose(rows, dets, atol=1e-6)
    assert path.read_text().splitlines()[0] == "1.500 2.250 30.000 40.750 0.500000"
    with pytest.raises(ValueError, match=r"\[K, 5\]"):
        write_darkface_prediction(tmp_path, "x.png", np.zeros((2, 4)))


# ---------------------------------------------------------------- image reading

def test_read_rgb_and_grayscale_png(tmp_path):
    bgr = np.zeros((5, 7, 3), np.uint8)
    bgr[..., 0], bgr[..., 2] = 10, 200                        # blue 10, red 200
    cv2.imwrite(str(tmp_path / "c.png"), bgr)
    rgb = read_image(tmp_path / "c.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (5, 7, 3) and rgb.flags.writeable
    np.testing.assert_array_equal(rgb[0, 0], [200, 0, 10])

    gray = np.arange(35, dtype=np.uint8).reshape(5, 7) * 7
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    out = read_image(tmp_path / "g.png")
    assert out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=2))


def test_read_rgba_drops_alpha(tmp_path):
    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 1], bgra[..., 3] = 123, 0                       # fully transparent green
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png")[0, 0], [0, 123, 0])


def test_read_16bit_keeps_the_high_byte(tmp_path):
    gray16 = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000 + 255)
    cv2.imwrite(str(tmp_path / "g16.png"), gray16)
    out = read_image(tmp_path / "g16.png")
    np.testing.assert_array_equal(out[..., 0], gray16 >> 8)
    np.testing.assert_array_equal(out[..., 2], gray16 >> 8)

    bgr16 = np.stack([gray16, gray16 // 2, gray16 // 3], axis=-1)
    cv2.imwrite(str(tmp_path / "c16.png"), bgr16)
    np.testing.assert_array_equal(read_image(tmp_path / "c16.png"), bgr16[..., ::-1] >> 8)


def test_read_palette_png(tmp_path):
    pal = Image.new("P", (3, 2))
    pal.putpalette([0, 0, 0, 250, 20, 30] + [0] * 762)
    pal.putpixel((1, 0), 1)
    pal.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(out[0, 1], [250, 20, 30])
    np.testing.assert_array_equal(out[1, 1], [0, 0, 0])


def test_unreadable_images_raise_image_read_error(tmp_path):
    (tmp_path / "junk.jpg").write_bytes(b"this is not a jpeg at all" * 10)
    ok, buf = cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))
    (tmp_path / "cut.jpg").write_bytes(buf.tobytes()[: len(buf) // 2])
    for name in ("junk.jpg", "cut.jpg", "missing.png"):
        with pytest.raises(ImageReadError, match=name) as info:
            read_image(tmp_path / name)
        assert isinstance(info.value, UserError)
        assert info.value.path == str(tmp_path / name)


def test_plan_around_a_base_scale():
    """base_scale b: the reference's plan for the image resized by b, every shrink times b;
    the sample profile's b = 0.5 with cap 1 tests at 0.5 (origin, flip), shrinks to 0.25 /
    0.375 for big faces and enlarges to 1.0 / 0.75 for small ones."""
    sample = paper_predict(max_shrink_cap=1.0, pyramid_scales=(0.25,), base_scale=0.5)
    assert plan_passes(400, 500, sample) == [
        ScalePass(0.5, keep=A), ScalePass(0.5, flip=True, keep=A), ScalePass(0.25, keep=L),
        ScalePass(0.375, keep=L), ScalePass(1.0, keep=S), ScalePass(0.75, keep=S), ScalePass(0.125, keep=L)]
    # b = 1 is the reference: the same plan as a cap of 1 always gave
    ref = paper_predict(max_shrink_cap=1.0, pyramid_scales=(0.25,))
    assert [p.shrink for p in plan_passes(400, 500, ref)] == [1.0, 1.0, 0.5, 0.75, 0.75, 0.25]
    assert plan_passes(400, 500, dataclasses.replace(sample, single_scale=True)) == [ScalePass(0.5)]
    # a huge image: the largest scale stays max_shrink (the reference's memory bound) whatever b is
    ms = max_shrink(5000, 6000)
    for b in (0.5, 2.0):
        plan = plan_passes(5000, 6000, dataclasses.replace(sample, base_scale=b))
        assert max(p.shrink for p in plan) == pytest.approx(ms)
