"""Priors, IoU, encode/decode, matching, NMS and detection (spec §4, §9, §10)."""
import numpy as np
import pytest

import dainet.jt  # noqa: F401  (configures Jittor before it loads)
import jittor as jt

from dainet.boxes.coder import decode, encode
from dainet.boxes.detect import detect
from dainet.boxes.iou import iou_xyxy, iou_xyxy_np
from dainet.boxes.matcher import match, pad_targets
from dainet.boxes.nms import nms
from helpers import paper_feature_sizes, paper_model, prior_spec
from dainet.errors import UserError

STEPS = [4, 8, 16, 32, 64, 128]
SIZES = [8, 16, 32, 64, 128, 256]
VAR = (0.1, 0.2)


def _xyxy_np(cxcywh):
    return np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], 1)


# ---------------------------------------------------------------- priors
def test_priors_640_count_and_cells():
    assert prior_spec(STEPS).feature_sizes((640, 640)) == [(160, 160), (80, 80), (40, 40), (20, 20),
                                                (10, 10), (5, 5)]
    p = prior_spec(STEPS, SIZES).priors((640, 640))
    assert p.shape == (34125, 4) and p.dtype == np.float32
    np.testing.assert_allclose(p[0], [2 / 640, 2 / 640, 8 / 640, 8 / 640], rtol=1e-6)
    # level 0, row i=2, column j=3: row-major index 2 * 160 + 3
    np.testing.assert_allclose(p[2 * 160 + 3], [3.5 * 4 / 640, 2.5 * 4 / 640, 8 / 640, 8 / 640],
                               rtol=1e-6)
    np.testing.assert_allclose(p[160 * 160], [4 / 640, 4 / 640, 16 / 640, 16 / 640], rtol=1e-6)
    # last level, last cell (4, 4): centre 4.5 * 128 / 640, size 256 / 640
    np.testing.assert_allclose(p[-1], [0.9, 0.9, 0.4, 0.4], rtol=1e-6)


def test_priors_odd_size_follow_the_backbone():
    h, w = 333, 517
    # by hand: pool1/pool2 floor, pool3 ceil, pool4/pool5 floor, extras floor((n-1)/2)+1
    # H: 333 -> 166 -> 83 | ceil 42 | 21 | 10 | 5 | 3
    # W: 517 -> 258 -> 129 | ceil 65 | 32 | 16 | 8 | 4
    expected = [(83, 129), (42, 65), (21, 32), (10, 16), (5, 8), (3, 4)]
    assert prior_spec(STEPS).feature_sizes((h, w)) == expected
    p = prior_spec(STEPS, SIZES).priors((h, w))
    assert len(p) == sum(a * b for a, b in expected) == 14321
    # level 2, cell (i=1, j=2): x and y are normalised by W and H respectively
    idx = 83 * 129 + 42 * 65 + 1 * 32 + 2
    np.testing.assert_allclose(p[idx], [2.5 * 16 / w, 1.5 * 16 / h, 32 / w, 32 / h], rtol=1e-6)


def test_priors_cached_read_only_and_clip():
    a = prior_spec(STEPS, SIZES).priors((64, 64))
    assert prior_spec(list(STEPS), tuple(SIZES)).priors([64, 64]) is a
    assert not a.flags.writeable
    c = prior_spec(STEPS, SIZES, clip=True).priors((64, 64))
    assert c.max() == 1.0 and a.max() == 4.0 and c.min() >= 0.0


def test_priors_bad_steps_or_tiny_input_raise_user_error():
    with pytest.raises(UserError, match="priors.steps"):
        prior_spec([8, 16, 32, 64, 128, 256]).feature_sizes((640, 640))
    with pytest.raises(UserError, match="too small"):
        prior_spec(STEPS, SIZES).priors((16, 640))


# ---------------------------------------------------------------- IoU, coder
def test_iou_continuous_coordinates_and_batched():
    a = jt.array(np.array([[0, 0, 2, 2]], np.float32))
    b = jt.array(np.array([[1, 1, 3, 3], [2, 2, 4, 4], [0, 0, 2, 2]], np.float32))
    np.testing.assert_allclose(iou_xyxy(a, b).numpy(), [[1 / 7, 0, 1]], rtol=1e-6)
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 1, (2, 5, 2)).astype(np.float32)
    boxes_a = np.concatenate([xy, xy + rng.uniform(0.05, 0.5, (2, 5, 2))], -1).astype(np.float32)
    boxes_b = boxes_a[:, ::-1] + 0.05
    got = iou_xyxy(jt.array(boxes_a), jt.array(boxes_b)).numpy()
    assert got.shape == (2, 5, 5)
    np.testing.assert_allclose(got, iou_xyxy_np(boxes_a, boxes_b), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("plus1", [False, True])
def test_jittor_iou_shares_the_numpy_formula_and_convention(plus1):
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 300, (2, 6, 2))
    a = np.concatenate([xy, xy + rng.uniform(0, 60, (2, 6, 2))], -1)
    b = a[:, ::-1] + rng.uniform(-10, 10, a.shape)
    np.testing.assert_allclose(iou_xyxy(jt.array(a), jt.array(b), plus1=plus1).numpy(),
                               iou_xyxy_np(a, b, plus1=plus1), rtol=1e-5, atol=1e-7)


def test_decode_inverts_encode():
    priors = prior_spec(STEPS, SIZES).priors((64, 64))
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 0.8, (2, len(priors), 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0.01, 0.2, xy.shape)], -1).astype(np.float32)
    loc = encode(jt.array(boxes), jt.array(priors), VAR)
    np.testing.assert_allclose(decode(loc, jt.array(priors), VAR).numpy(), boxes, atol=1e-6)
    # a box equal to its prior encodes to zeros
    zeros = encode(jt.array(_xyxy_np(priors)), jt.array(priors), VAR).numpy()
    np.testing.assert_allclose(zeros, 0, atol=1e-5)


# ---------------------------------------------------------------- matching
PRIORS64 = prior_spec(STEPS, SIZES).priors((64, 64))  # 342 priors; prior 0 = level 0 cell (0, 0)


def _match(gt_rows_per_image, thresh=0.35):
    gt = jt.array(pad_targets(gt_rows_per_image))
    loc_t, conf_t = match(gt, jt.array(PRIORS64), thresh, VAR)
    return loc_t.numpy(), conf_t.numpy()


def _encode_np(box_xyxy, prior):
    g = np.array([(box_xyxy[0] + box_xyxy[2]) / 2, (box_xyxy[1] + box_xyxy[3]) / 2,
                  box_xyxy[2] - box_xyxy[0], box_xyxy[3] - box_xyxy[1]])
    return np.concatenate([(g[:2] - prior[:2]) / (VAR[0] * prior[2:]),
                           np.log(g[2:] / prior[2:]) / VAR[1]])


def test_match_forces_best_prior_even_below_threshold():
    tiny = [0.0, 0.0, 0.02, 0.02, 1]  # IoU with prior 0 is 0.0004 / 0.015625 = 0.0256 < 0.35
    loc_t, conf_t = _match([np.array([tiny])])
    assert np.flatnonzero(conf_t[0]).tolist() == [0]
    np.testing.assert_allclose(loc_t[0, 0], _encode_np(tiny, PRIORS64[0]), rtol=1e-5)


def test_match_two_gts_sharing_a_best_prior_later_one_wins():
    g1, g2 = [0.0, 0.0, 0.02, 0.02, 1], [0.0, 0.0, 0.03, 0.03, 1]  # both best at prior 0
    for first, second in [(g1, g2), (g2, g1)]:
        loc_t, conf_t = _match([np.array([first, second])])
        assert np.flatnonzero(conf_t[0]).tolist() == [0]
        np.testing.assert_allclose(loc_t[0, 0], _encode_np(second, PRIORS64[0]), rtol=1e-5)


def test_match_threshold_and_label():
    # 12 px face at (4, 4)-(16, 16) px of the 64x64 input; IoU 0.444 with the level-0 prior
    # of cell (2, 2) [6, 14]^2, 0.5625 with the level-1 prior of cell (1, 1) [4, 20]^2 (the best)
    face = [4 / 64, 4 / 64, 16 / 64, 16 / 64, 1]
    loc_t, conf_t = _match([np.array([face])])
    iou = iou_xyxy_np(np.array([face[:4]]), _xyxy_np(PRIORS64))[0]
    np.testing.assert_array_equal(conf_t[0], (iou >= 0.35).astype(np.int32))
    assert np.flatnonzero(conf_t[0]).tolist() == [2 * 16 + 2, 256 + 1 * 8 + 1]
    _, conf_hi = _match([np.array([face])], thresh=0.99)
    assert np.flatnonzero(conf_hi[0]).tolist() == [256 + 1 * 8 + 1]  # only the forced one


def test_match_padding_never_matches_and_empty_image_is_background():
    face = [0.125, 0.125, 0.625, 0.625, 1]
    decoy = [0.0, 0.0, 0.02, 0.02, -1]  # a padding row with a real-looking box
    gt = np.array([[face, decoy], [decoy, decoy]], np.float32)
    loc_t, conf_t = match(jt.array(gt), jt.array(PRIORS64), 0.35, VAR)
    loc_ref, conf_ref = _match([np.array([face])])
    np.testing.assert_array_equal(conf_t.numpy()[0], conf_ref[0])
    assert conf_t.numpy()[0, 0] == 0  # the decoy's best prior was not forced
    assert conf_t.numpy()[1].sum() == 0 and np.isfinite(loc_t.numpy()).all()
    _, conf_empty = _match([np.zeros((0, 5)), np.zeros((0, 5))])
    assert conf_empty.shape == (2, len(PRIORS64)) and conf_empty.sum() == 0
    loc_none, conf_none = match(jt.array(np.zeros((2, 0, 5), np.float32)), jt.array(PRIORS64),
                                0.35, VAR)  # G = 0: no padding row at all
    assert conf_none.numpy().sum() == 0 and np.isfinite(loc_none.numpy()).all()


# ---------------------------------------------------------------- NMS, detect
def _nms_brute_force(boxes, scores, thresh, top_k):
    def iou(a, b):
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
    candidates = sorted(range(len(scores)), key=lambda i: -scores[i])[:top_k]
    keep = []
    for i in candidates:
        if all(iou(boxes[i], boxes[k]) <= thresh for k in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed,top_k", [(0, 1000), (1, 60), (2, 1000)])
def test_nms_matches_brute_force(seed, top_k):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, (10, 2))[rng.integers(0, 10, 200)] + rng.normal(0, 0.03, (200, 2))
    half = rng.uniform(0.02, 0.1, (200, 2))
    boxes = np.concatenate([centres - half, centres + half], 1)
    scores = rng.permutation(200) / 200.0  # distinct scores: a unique greedy order
    kept = nms(boxes, scores, 0.3, top_k)
    expected = _nms_brute_force(boxes, scores, 0.3, top_k)
    assert 10 < len(expected) < min(top_k, 200)  # the case really suppresses
    assert kept.tolist() == expected
    assert nms(boxes, scores, 0.3, top_k, max_keep=5).tolist() == expected[:5]


def test_detect_threshold_nms_and_keep_top_k():
    n, p = 2, len(PRIORS64)
    conf = np.zeros((n, p, 2), np.float32)
    conf[:, :, 0] = 5.0  # background everywhere: face probability ~ 0.0067 < 0.05
    # level-0 priors of cells (0,0), (0,1), (0,2): 8 px boxes at 4 px steps
    # IoU((0,0), (0,1)) = 32 / 96 = 1/3 > 0.3 -> suppressed; (0,0) and (0,2) do not overlap
    conf[0, [0, 1, 2], 1] = [9.0, 8.0, 7.0]
    conf[0, [0, 1, 2], 0] = 0.0
    loc = np.zeros((n, p, 4), np.float32)
    out = detect(jt.array(loc), jt.array(conf), PRIORS64, VAR, conf_thresh=0.05, nms_thresh=0.3,
                 top_k=5000, keep_top_k=750)
    assert len(out) == 2 and out[1].shape == (0, 5)
    assert out[0].shape == (2, 5)
    np.testing.assert_allclose(out[0][:, :4], _xyxy_np(PRIORS64)[[0, 2]], atol=1e-6)
    np.testing.assert_allclose(out[0][:, 4], 1 / (1 + np.exp([-9.0, -7.0])), rtol=1e-5)
    only_one = detect(jt.array(loc), jt.array(conf), PRIORS64, VAR, keep_top_k=1)
    assert len(only_one[0]) == 1
    no_nms = detect(jt.array(loc), jt.array(conf), PRIORS64, VAR, nms_thresh=1.0)
    assert len(no_nms[0]) == 3


# ---------------------------------------------------------------- priors from params + model
def _reference_priors(hw, steps, sizes, clip):
    """The spec §4 priors by hand, cell by cell, on the paper backbone's sizes written out
    (as before PriorSpec derived them from ModelConfig)."""
    h, w = hw
    rows = []
    for (lh, lw), step, size in zip(paper_feature_sizes(h, w), steps, sizes):
        for i in range(lh):
            for j in range(lw):
                rows.append([(j + 0.5) * float(step) / w, (i + 0.5) * float(step) / h,
                             float(size) / w, float(size) / h])
    p = np.array(rows)
    return (np.clip(p, 0.0, 1.0) if clip else p).astype(np.float32)


@pytest.mark.parametrize("shot", [1, 2])
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("hw", [(640, 640), (64, 64), (300, 517), (33, 1000), (129, 255), (28, 28)])
def test_prior_spec_for_shot_gives_the_spec_priors_bit_for_bit(tmp_path, shot, clip, hw):
    from conftest import ROOT, write_params
    from dainet.boxes.priors import PriorSpec, both_shots
    from dainet.models.config import ModelConfig
    from dainet.params import load_params

    p = load_params(write_params(tmp_path / "params.yaml", {"priors.clip": clip}, base=ROOT / "params.yaml"))
    model = p.section("model").load(ModelConfig)
    spec = PriorSpec.for_shot(p.section("priors"), model, shot)
    assert both_shots(p.section("priors"), model)[shot - 1] == spec
    pr = p.section("priors")
    expected = _reference_priors(hw, pr.value("steps", list[int]), pr.value(f"sizes_shot{shot}", list[int]), clip)
    got = spec.priors(hw)
    assert got.dtype == np.float32 and got.tobytes() == expected.tobytes()


def test_prior_feature_sizes_follow_the_model_pools():
    paper = paper_model()
    # pool3 without ceil_mode: of2..of6 of an odd of1 lose a row
    floor3 = paper_model(vgg_cfg=tuple("M" if v == "C" else v for v in paper.vgg_cfg))
    assert paper.level_downsampling == (("M", "M"), ("C",), ("M",), ("M",), ("S",), ("S",))
    assert prior_spec(model=paper).feature_sizes((333, 333))[1] == (42, 42)
    assert prior_spec(model=floor3).feature_sizes((333, 333))[1] == (41, 41)
