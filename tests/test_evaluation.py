"""WIDER FACE / DARK FACE evaluation (spec §12): official figures, hand cases, a loop reference."""
from __future__ import annotations

import numpy as np
import pytest

from dainet.boxes.iou import iou_xyxy_np
from dainet.errors import UserError
from dainet.evaluation import (ScoreNormalisationWarning, WiderGroundTruth, evaluate_darkface,
                               evaluate_wider, load_wider_ground_truth,
                               read_darkface_labels, read_darkface_predictions,
                               read_wider_predictions, voc_ap, write_curve_csv)
from dainet.formats.predictions import read_wider_prediction_file
from helpers import REAL_GT, TINY_EVENTS, TINY_KEEPS, write_wider_gt

needs_real_gt = pytest.mark.skipif(not (REAL_GT / "wider_face_val.mat").is_file(),
                                   reason=f"official WIDER FACE val ground truth not at {REAL_GT}")


# ------------------------------------------------------------------ official figures

@pytest.fixture(scope="module")
def real_gt():
    return load_wider_ground_truth(REAL_GT)


def gt_as_predictions(gt: WiderGroundTruth, keep: dict | None = None) -> dict:
    """Every face (or only ``keep[i]``) as a prediction; distinct scores descending
    over the whole set in ground-truth order."""
    n_total = sum(len(b) for b in gt.boxes_xywh)
    preds, start = {}, 0
    for i, (key, boxes) in enumerate(zip(gt.images, gt.boxes_xywh)):
        scores = 1.0 - (start + np.arange(len(boxes))) / n_total
        start += len(boxes)
        idx = np.arange(len(boxes)) if keep is None else keep[i]
        if len(idx):
            preds[key] = np.column_stack([boxes[idx], scores[idx]])
    return preds


@needs_real_gt
def test_real_ground_truth_structure(real_gt):
    assert len(real_gt.images) == 3226
    assert sum(len(b) for b in real_gt.boxes_xywh) == 39708
    assert {s: sum(i.size for i in v) for s, v in real_gt.counted.items()} == \
        {"easy": 7211, "medium": 13319, "hard": 31958}
    assert real_gt.images[0] == ("0--Parade", "0_Parade_marchingband_1_465")


@needs_real_gt
def test_real_gt_boxes_as_predictions_give_official_figures(real_gt):
    aps = {s: r.ap for s, r in evaluate_wider(gt_as_predictions(real_gt), real_gt).items()}
    assert aps == pytest.approx({"easy": 0.999950, "medium": 0.999976, "hard": 0.999913}, abs=1e-6)


@needs_real_gt
def test_real_easy_faces_only_give_official_figures(real_gt):
    preds = gt_as_predictions(real_gt, keep=real_gt.counted["easy"])
    aps = {s: r.ap for s, r in evaluate_wider(preds, real_gt).items()}
    assert aps == pytest.approx({"easy": 1.0, "medium": 0.541407, "hard": 0.225640}, abs=1e-6)


# --------------------------------------------------------- literal loop reference

def _iou_scalar(a, b) -> float:
    """+1 convention IoU of two (x1, y1, x2, y2) boxes, one pair at a time."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    return iw * ih / ((a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - iw * ih)


def reference_wider_ap(preds, gts, keeps, iou_thresh, n_thr):
    """The official tool's loops, written out: per image, per prediction, per threshold."""
    all_scores = np.concatenate([p[:, 4] for p in preds if len(p)])
    lo, hi = all_scores.min(), all_scores.max()
    acc = np.zeros((n_thr, 2))
    n_faces = 0
    for pred, gt, keep in zip(preds, gts, keeps):
        n_faces += len(keep)
        if len(gt) == 0 or len(pred) == 0:
            continue
        pred = pred[np.argsort(-pred[:, 4], kind="stable")]
        score = (pred[:, 4] - lo) / (hi - lo)
        pc = np.column_stack([pred[:, :2], pred[:, :2] + pred[:, 2:4]])
        gc = np.column_stack([gt[:, :2], gt[:, :2] + gt[:, 2:4]])
        counts = np.zeros(len(gt), bool)
        counts[keep] = True
        state = np.zeros(len(gt))            # 1 recalled, -1 ignore face hit
        proposal = np.ones(len(pred))
        pred_recall = np.zeros(len(pred))
        for h in range(len(pred)):
            ious = [_iou_scalar(pc[h], g) for g in gc]
            j = int(np.argmax(ious))
            if ious[j] >= iou_thresh:
                if not counts[j]:
                    state[j], proposal[h] = -1, -1
                elif state[j] == 0:
                    state[j] = 1
            pred_recall[h] = np.sum(state == 1)
        for t in range(n_thr):
            above = np.flatnonzero(score >= 1 - (t + 1) / n_thr)
            if len(above):
                r = above[-1]
                acc[t] += (np.sum(proposal[:r + 1] == 1), pred_recall[r])
    with np.errstate(invalid="ignore"):
        prec = acc[:, 1] / acc[:, 0]
    rec = acc[:, 1] / n_faces
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(len(mpre) - 2, -1, -1):   # MATLAB's max skips NaN
        mpre[i] = mpre[i + 1] if np.isnan(mpre[i]) else max(mpre[i], mpre[i + 1])
    ap = sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])
    return ap, acc


def random_wider_set(rng, n_images=8):
    preds, gts, keeps = [], [], []
    for _ in range(n_images):
        g = int(rng.integers(0, 5))
        gt = np.column_stack([rng.integers(0, 80, (g, 2)), rng.integers(4, 30, (g, 2))]).astype(float)
        if g >= 2 and rng.random() < 0.3:
            gt[1] = gt[0]                                    # the same face listed twice
        keep = np.flatnonzero(rng.random(g) < 0.6)
        hits = gt[rng.integers(0, g, int(rng.integers(0, 6)))] if g else np.zeros((0, 4))
        hits = hits + rng.normal(0, 2, hits.shape)           # mostly IoU >= 0.5, some not
        noise = np.column_stack([rng.uniform(0, 80, (3, 2)), rng.uniform(4, 30, (3, 2))])
        boxes = np.concatenate([hits, noise[: int(rng.integers(0, 4))]])
        scores = np.round(rng.random(len(boxes)), 1)          # many ties
        preds.append(np.column_stack([boxes, scores]))
        gts.append(gt)
        keeps.append(keep)
    return preds, gts, keeps


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_wider_equals_official_loops(seed):
    rng = np.random.default_rng(seed)
    preds, gts, keeps = random_wider_set(rng)
    images = [("e", f"img{i}") for i in range(len(gts))]
    gt = WiderGroundTruth(images, gts, {"s": keeps})
    n_thr = 40
    result = evaluate_wider(dict(zip(images, preds)), gt, iou_thresh=0.5, n_thresholds=n_thr)["s"]
    ref_ap, ref_acc = reference_wider_ap(preds, gts, keeps, 0.5, n_thr)
    np.testing.assert_array_equal(result.curve.proposals, ref_acc[:, 0])
    np.testing.assert_array_equal(result.curve.recalled, ref_acc[:, 1])
    assert result.ap == pytest.approx(ref_ap, abs=1e-12)


# ------------------------------------------------------------------- hand cases

def _one_setting(images_gt, keeps, preds):
    images = [("ev", f"im{i}") for i in range(len(images_gt))]
    gt = WiderGroundTruth(images, [np.asarray(g, float).reshape(-1, 4) for g in images_gt],
                          {"s": [np.asarray(k, np.int64) for k in keeps]})
    return images, gt, {images[i]: np.asarray(p, float) for i, p in preds.items()}


def test_ignore_face_double_hit_and_image_without_predictions():
    f0, f1, f2 = [0, 0, 20, 20], [100, 0, 20, 20], [200, 0, 20, 20]
    g0, h0 = [0, 0, 30, 30], [50, 50, 10, 10]
    images, gt, preds = _one_setting(
        [[f0, f1, f2], [g0], [h0]], [[0, 2], [0], [0]],
        {0: [f1 + [1.0],                   # hits the ignore face: no proposal
             f0 + [0.8555],                # recalls F0
             [1, 1, 20, 20, 0.6555],       # F0 again: a proposal, no recall
             [500, 500, 10, 10, 0.4555]],  # false positive
         2: [h0 + [0.0]]})                 # image 1 has no prediction
    curve = evaluate_wider(preds, gt)["s"].curve
    k = np.arange(1, 1001)                 # t = 1 - k/1000
    exp_prop = np.select([k < 145, k < 345, k < 545, k < 1000], [0, 1, 2, 3], 4)
    exp_rec = np.select([k < 145, k < 1000], [0, 1], 2)
    np.testing.assert_array_equal(curve.proposals, exp_prop)
    np.testing.assert_array_equal(curve.recalled, exp_rec)
    assert np.isnan(curve.precision[:144]).all()
    np.testing.assert_allclose(curve.recall[-1], 2 / 4)   # 4 faces count, the unpredicted one too
    # envelope: recall 0.25 at precision 1, then 0.5 at precision 0.5
    assert evaluate_wider(preds, gt)["s"].ap == pytest.approx(0.25 * 1 + 0.25 * 0.5)


def test_image_whose_faces_all_ignored_is_not_skipped():
    face = [0, 0, 20, 20]
    base = dict(images_gt=[[face], [face]], keeps=[[0], []])
    _, gt, preds = _one_setting(**base, preds={0: [face + [0.5]], 1: [[300, 300, 9, 9, 1.0]]})
    curve = evaluate_wider(preds, gt)["s"].curve
    # the far-away prediction in the all-ignore image is a false positive
    assert curve.proposals[-1] == 2 and curve.recalled[-1] == 1
    _, gt, preds = _one_setting(**base, preds={0: [face + [0.5]], 1: [face + [1.0]]})
    curve = evaluate_wider(preds, gt)["s"].curve
    assert curve.proposals[-1] == 1                      # the hit on its ignore face is not


def test_unsorted_predictions_are_sorted_by_score():
    face = [10, 10, 40, 40]
    listing = [[12, 12, 40, 40, 0.2], face + [0.9], [300, 300, 5, 5, 0.1]]
    _, gt, preds = _one_setting([[face]], [[0]], {0: listing})
    _, _, preds_rev = _one_setting([[face]], [[0]], {0: listing[::-1]})
    a, b = evaluate_wider(preds, gt)["s"], evaluate_wider(preds_rev, gt)["s"]
    # normalised scores 0.125 / 1 / 0: at t = 0.5 only the best one counts and it recalls
    assert a.curve.proposals[499] == 1 and a.curve.recalled[499] == 1
    np.testing.assert_array_equal(a.curve.recalled, b.curve.recalled)
    assert a.ap == b.ap == pytest.approx(1.0)


def test_equal_scores_follow_official_zero_division():
    face = [0, 0, 20, 20]
    _, gt, preds = _one_setting([[face], [face]], [[0], [0]],
                                {0: [face + [0.7]], 1: [face + [0.7]]})
    with pytest.warns(ScoreNormalisationWarning, match="divides by zero"):
        res = evaluate_wider(preds, gt)["s"]
    assert res.ap == 0.0                      # official: NaN scores pass no threshold
    assert (res.curve.proposals == 0).all() and np.isnan(res.curve.precision).all()


def test_no_counted_face_is_an_error():
    _, gt, preds = _one_setting([[[0, 0, 5, 5]]], [[]], {0: [[0, 0, 5, 5, 1.0], [1, 1, 5, 5, 0.0]]})
    with pytest.raises(UserError, match="no ground-truth face counts"):
        evaluate_wider(preds, gt)


def test_voc_ap_hand_values():
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 0.5])) == pytest.approx(0.75)
    # non-monotone precision takes its envelope from the right
    assert voc_ap(np.array([0.2, 0.4, 0.6]), np.array([0.5, 1.0, 0.6])) == pytest.approx(0.52)
    # NaN (no proposal yet) at recall 0 does not enter the sum
    assert voc_ap(np.array([0.0, 0.5]), np.array([np.nan, 1.0])) == pytest.approx(0.5)
    # elsewhere NaN is skipped by the envelope, as MATLAB's max skips it
    assert voc_ap(np.array([0.5, 0.5]), np.array([1.0, np.nan])) == pytest.approx(0.5)


def test_iou_plus1_convention():
    a = np.array([[0, 0, 9, 9]], float)                        # 10 x 10 pixels
    b = np.array([[5, 0, 14, 9], [10, 0, 19, 9], [9, 0, 18, 9]], float)
    np.testing.assert_allclose(iou_xyxy_np(a, b, plus1=True), [[50 / 150, 0.0, 10 / 190]])


# ---------------------------------------------------------------------- DARK FACE

def test_darkface_skip_rules():
    face = [10, 10, 30, 30]
    labels = {"a": np.array([face], float), "b": np.zeros((0, 4)), "c": np.array([face], float)}
    preds = {"a": np.array([face + [0.9]]),
             "b": np.array([[5, 5, 9, 9, 1.0], [50, 50, 60, 60, 0.8]])}   # no label box: skipped
    # "c" has no prediction file: its face still counts
    res = evaluate_darkface(preds, labels)
    assert res.curve.proposals[-1] == 1 and res.curve.recalled[-1] == 1
    assert res.curve.recall[-1] == pytest.approx(0.5)
    assert res.ap == pytest.approx(0.5)


def test_darkface_has_no_ignore_set_and_counts_every_proposal():
    f0, f1 = [10, 10, 30, 30], [100, 10, 120, 30]
    labels = {"a": np.array([f0, f1], float)}
    preds = {"a": np.array([f0 + [0.9], [11, 11, 30, 30, 0.5], f1 + [0.1]])}
    curve = evaluate_darkface(preds, labels).curve
    assert curve.proposals[-1] == 3 and curve.recalled[-1] == 2


def test_darkface_official_xyxy_as_xywh_arithmetic():
    gt = [1000, 500, 1020, 520]
    labels = {"a": np.array([gt], float)}
    preds = {"a": np.array([[1005, 505, 1025, 525, 0.9], [0, 0, 4, 4, 0.1]])}
    # corners: 16 x 16 of 21 x 21 boxes, IoU 256 / 626 < 0.5: a miss
    assert evaluate_darkface(preds, labels).curve.recalled[-1] == 0
    # the official tool's (x1, y1, x1 + x2, y1 + y2) boxes overlap almost fully
    assert evaluate_darkface(preds, labels, xyxy_as_xywh=True).curve.recalled[-1] == 1


def test_darkface_folders_and_bad_lines(tmp_path):
    (tmp_path / "label").mkdir()
    (tmp_path / "pred").mkdir()
    (tmp_path / "label" / "img1.txt").write_text("2\n1 2 30 40\n50 60 70 80\n")
    (tmp_path / "pred" / "img1.txt").write_text("1 2 30 40 0.9\n50 60 70 80 0.3\n\n")
    labels = read_darkface_labels(tmp_path / "label")
    preds = read_darkface_predictions(tmp_path / "pred")
    np.testing.assert_array_equal(labels["img1"], [[1, 2, 30, 40], [50, 60, 70, 80]])
    assert preds["img1"].shape == (2, 5)
    assert evaluate_darkface(preds, labels).ap == pytest.approx(1.0)

    (tmp_path / "label" / "img2.txt").write_text("3\n1 2 30 40\n")
    with pytest.raises(UserError, match=r"img2.txt:2: count 3 on line 1 does not match the 1 box lines"):
        read_darkface_labels(tmp_path / "label")
    (tmp_path / "pred" / "img3.txt").write_text("1 2 30 40 0.9\n1 2 30 0.5\n")
    with pytest.raises(UserError, match=r"img3.txt:2: expected 5 finite numbers, got '1 2 30 0.5'"):
        read_darkface_predictions(tmp_path / "pred")


# ---------------------------------------------------------------- WIDER files

def test_wider_prediction_file_parsing(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("0_Parade_x_1.jpg\n2\n10 20 30 40 0.9\n1.5 2.5 3 4 0.1\n\n")
    np.testing.assert_array_equal(read_wider_prediction_file(f),
                                  [[10, 20, 30, 40, 0.9], [1.5, 2.5, 3, 4, 0.1]])
    f.write_text("name\n0\n")
    assert read_wider_prediction_file(f).shape == (0, 5)
    bad = {"name\n2\n10 20 30 40 0.9\n1 2 3 4\n": r"p.txt:4: expected 5 finite numbers, got '1 2 3 4'",
           "name\n1\n10 20 3O 40 0.9\n": r"p.txt:3: expected 5 finite numbers",
           "name\n1\n10 20 30 40 nan\n": r"p.txt:3: expected 5 finite numbers",
           "name\n3\n10 20 30 40 0.9\n": r"p.txt:2: count says 3 boxes but 1",
           "name\ntwo\n": r"p.txt:2: expected a box count, got 'two'"}
    for text, message in bad.items():
        f.write_text(text)
        with pytest.raises(UserError, match=message):
            read_wider_prediction_file(f)


def test_tiny_mat_ground_truth_roundtrip(tmp_path):
    write_wider_gt(tmp_path, TINY_EVENTS, TINY_KEEPS)
    gt = load_wider_ground_truth(tmp_path)
    assert gt.images == [("0--Parade", "0_a"), ("0--Parade", "0_b"), ("1--Handshaking", "1_a")]
    np.testing.assert_array_equal(gt.boxes_xywh[0], [[10, 10, 20, 20], [60, 10, 20, 20]])
    assert [k.tolist() for k in gt.counted["medium"]] == [[0, 1], [0], []]
    preds = {("0--Parade", "0_a"): np.array([[10, 10, 20, 20, 0.9], [60, 10, 20, 20, 0.8]]),
             ("1--Handshaking", "1_a"): np.array([[0, 0, 8, 8, 0.1]])}
    aps = {s: r.ap for s, r in evaluate_wider(preds, gt).items()}
    # easy: 1 of 2 faces found (the other hit is ignored); hard: 3 of 4
    assert aps == pytest.approx({"easy": 0.5, "medium": 2 / 3, "hard": 0.75})


def test_ground_truth_errors(tmp_path):
    with pytest.raises(UserError, match="wider_face_val.mat: WIDER FACE ground-truth file not found"):
        load_wider_ground_truth(tmp_path)
    keeps = {**TINY_KEEPS, "easy": {**TINY_KEEPS["easy"], "1--Handshaking": {"1_a": [2]}}}
    write_wider_gt(tmp_path, TINY_EVENTS, keeps)
    with pytest.raises(UserError, match=r"wider_easy_val.mat: gt_list of 1--Handshaking/1_a indexes beyond"):
        load_wider_ground_truth(tmp_path)
    (tmp_path / "wider_face_val.mat").write_text("not a mat file")
    with pytest.raises(UserError, match="cannot read as a MATLAB .mat file"):
        load_wider_ground_truth(tmp_path)


def test_prediction_folder_must_match_ground_truth(tmp_path):
    write_wider_gt(tmp_path / "gt", TINY_EVENTS, TINY_KEEPS)
    (tmp_path / "pred" / "9--Other").mkdir(parents=True)
    (tmp_path / "pred" / "9--Other" / "x.txt").write_text("x\n0\n")
    with pytest.raises(UserError, match="no prediction file names an image"):
        evaluate_wider(read_wider_predictions(tmp_path / "pred"), tmp_path / "gt")
    with pytest.raises(UserError, match="prediction folder not found"):
        read_wider_predictions(tmp_path / "missing")


def test_curve_csv_leaves_out_undefined_precision(tmp_path):
    face = [0, 0, 20, 20]
    _, gt, preds = _one_setting([[face]], [[0]], {0: [face + [1.0], [90, 90, 5, 5, 0.0]]})
    curve = evaluate_wider(preds, gt, n_thresholds=4)["s"].curve   # t = 0.75, 0.5, 0.25, 0
    write_curve_csv(tmp_path / "pr.csv", curve)
    assert (tmp_path / "pr.csv").read_text().splitlines() == [
        "threshold,precision,recall", "0.75,1,1", "0.5,1,1", "0.25,1,1", "0,0.5,1"]


# ------------------------------------------------------------------ bootstrap over images

def test_bootstrap_resample_equals_the_set_with_images_repeated():
    """A resample weighted by draw counts is the AP of the set where each drawn image appears
    that many times: checked by building that set. Every image holds a score-0 and a score-1
    prediction, so the min-max normalisation is the same for any resample."""
    from dainet.evaluation.common import match_images, pr_curve, scheme_ap
    rng = np.random.default_rng(3)
    labels, preds = {}, {}
    for i in range(12):
        gt = rng.uniform(0, 80, (int(rng.integers(0, 4)), 2))
        labels[f"{i}"] = np.concatenate([gt, gt + rng.uniform(10, 30, gt.shape)], axis=1)
        jitter = np.concatenate([labels[f"{i}"] + rng.normal(0, 4, labels[f"{i}"].shape),
                                 rng.uniform(0, 100, (3, 4))])[:, :4]
        jitter[:, 2:] = np.maximum(jitter[:, 2:], jitter[:, :2] + 1)
        scores = np.concatenate([[0.0, 1.0], rng.uniform(0, 1, len(jitter) - 2)])
        preds[f"{i}"] = np.concatenate([jitter, scores[:, None]], axis=1)
    stems = sorted(labels)
    matches = match_images([preds[s][:, :4] for s in stems], [preds[s][:, 4] for s in stems],
                           [labels[s] for s in stems])
    full = scheme_ap(matches, np.ones(matches.n_gt, bool), matches.n_gt, 0.5, 1000)
    assert full.ci is None and full.ap == evaluate_darkface(preds, labels).ap
    for draw in (np.bincount(rng.integers(0, 12, 12), minlength=12), np.array([3] + [0] * 10 + [9])):
        copies_p = {f"{s}_{k}": preds[s] for s, n in zip(stems, draw) for k in range(n)}
        copies_l = {f"{s}_{k}": labels[s] for s, n in zip(stems, draw) for k in range(n)}
        if not sum(len(v) for v in copies_l.values()):
            continue
        expected = evaluate_darkface(copies_p, copies_l).ap
        hit = matches.best_iou >= 0.5
        from dainet.evaluation.common import first_hits, voc_ap
        faces = np.bincount(matches.gt_image, minlength=12) @ draw
        curve = pr_curve(matches.score, np.ones(len(hit), bool), first_hits(matches.best_gt, hit), faces, 1000,
                         weight=draw[matches.image])
        assert voc_ap(curve.recall, curve.precision) == pytest.approx(expected, abs=1e-12)
    boot = evaluate_darkface(preds, labels, bootstrap=300, seed=0)
    assert boot.ap == full.ap and boot.ci[0] < full.ap < boot.ci[1]
    assert evaluate_darkface(preds, labels, bootstrap=300, seed=0).ci == boot.ci    # seeded


def test_bootstrap_of_identical_images_has_no_spread():
    box = np.array([[10.0, 10.0, 40.0, 40.0]])
    labels = {f"{i}": np.concatenate([box, box + 50]) for i in range(6)}
    preds = {f"{i}": np.array([[10, 10, 40, 40, 0.9], [0, 0, 5, 5, 0.8], [60, 60, 90, 90, 0.1]])
             for i in range(6)}
    result = evaluate_darkface(preds, labels, bootstrap=50)
    assert result.ci == pytest.approx((result.ap, result.ap))


def test_two_detectors_share_each_resample_so_their_replicates_pair():
    """Replicate b of any detector on one image set is its AP on the same resample (the draws
    depend on the seed and the number of images only): rebuilt here as the set with each image
    repeated as often as the seeded draw b took it, for two different detectors."""
    from dainet.evaluation.common import percentile_interval
    box = np.array([[10.0, 10.0, 40.0, 40.0]])
    labels = {"a": box, "b": box + 50, "c": np.concatenate([box, box + 100]), "d": np.zeros((0, 4))}
    detectors = [{"a": [[10, 10, 40, 40, 0.9]], "b": [[0, 0, 9, 9, 0.8], [60, 60, 90, 90, 0.3]],
                  "c": [[10, 10, 40, 40, 0.7]], "d": [[1, 1, 5, 5, 0.5]]},
                 {"a": [[0, 0, 9, 9, 0.9]], "b": [[60, 60, 90, 90, 0.8]], "c": [[110, 110, 140, 140, 0.2],
                  [10, 10, 40, 40, 0.6]], "d": [[1, 1, 5, 5, 0.1]]}]
    stems = sorted(labels)
    rng = np.random.default_rng(7)
    draws = [rng.multinomial(4, np.full(4, 0.25)) for _ in range(6)]
    # a score-0 and a score-1 false positive in every image: min-max normalisation is the identity
    # for any resample
    extremes = [[200, 200, 205, 205, 0.0], [210, 210, 215, 215, 1.0]]
    for preds in detectors:
        preds = {k: np.array(v + extremes, float) for k, v in preds.items()}
        result = evaluate_darkface(preds, labels, bootstrap=6, seed=7)
        assert result.replicates.shape == (6,)
        for b, draw in enumerate(draws):
            copies = [(f"{s}_{k}", s) for s, n in zip(stems, draw) for k in range(n)]
            if not sum(len(labels[s]) for _, s in copies):
                assert np.isnan(result.replicates[b])   # no counted face: no AP, left out of the interval
                continue
            expected = evaluate_darkface({new: preds[s] for new, s in copies}, {new: labels[s] for new, s in copies})
            assert result.replicates[b] == pytest.approx(expected.ap, abs=1e-12), (b, draw)
        assert result.ci == percentile_interval(result.replicates)
    # a resample that draws only the faceless image has no AP: NaN, left out of the interval
    half = evaluate_darkface({"x": np.array([[10, 10, 40, 40, 0.9]]), "y": np.array([[0, 0, 5, 5, 0.2]])},
                             {"x": box, "y": np.zeros((0, 4))}, bootstrap=40, seed=0)
    assert 0 < np.isnan(half.replicates).sum() < 40 and half.ci == (1.0, 1.0)
