"""Predict stage (spec §10): detect_fn in pixels, the predict loop, both output formats,
skipped images, and the round trip through stages/evaluate.py."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import dainet.jt  # noqa: F401  (configures Jittor before it loads)
import jittor as jt

from dainet.boxes.convert import normalised_to_pixels
from dainet.errors import UserError
from dainet.evaluation import read_darkface_predictions, read_wider_predictions
from dainet.evaluation.darkface import evaluate_darkface
from dainet.formats.darkface import read_darkface_labels
from dainet.evaluation.wider import evaluate_wider, load_wider_ground_truth
from dainet.formats.images import read_image
from dainet.inference import multi_scale_detect
from dainet.inference.multiscale import MultiScaleConfig
from dainet.inference.predictor import (check_unique_outputs, folder_images, load_detector,
                                        make_detect_fn, predict_images,
                                        prediction_key)
from dainet.models import build_model, init_weights
from dainet.params import load_params
from dainet.weights import WeightError, save_checkpoint

from conftest import stage_main
from helpers import (IMAGE_HW, WIDTH, paper_model, paper_predict, prior_spec, write_images, write_list_file,
                     write_narrow_params, write_wider_gt)

@pytest.fixture(scope="module")
def tiny_net():
    return init_weights(build_model(paper_model(width=WIDTH), reflectance=True), seed=0)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_net) -> Path:
    path = tmp_path_factory.mktemp("weights") / "model.ckpt"
    save_checkpoint(path, {"model": tiny_net.state_dict(), "method": "dainet"})
    return path


@pytest.fixture(scope="module")
def wider_set(tmp_path_factory):
    """WIDER_val/images/<event>/<name>.jpg for two events, and a list file naming them."""
    root = tmp_path_factory.mktemp("wider")
    images = (write_images(root / "WIDER_val/images/0--Parade", ["0_Parade_a.jpg", "0_Parade_b.jpg"])
              + write_images(root / "WIDER_val/images/1--Handshaking", ["1_Handshaking_a.jpg"], seed=1))
    return root, images, write_list_file(root / "val.txt", images)


def run_predict(args: list[str]) -> int:
    return stage_main("predict")(args)


# ------------------------------------------------------------ detect_fn (fake network)

class FakeNet:
    """Stands in for DAINet.execute: zero loc offsets, one prior with a high face logit."""

    def __init__(self, n_priors: int, face_prior: int):
        self.n_priors, self.face_prior, self.inputs = n_priors, face_prior, []

    def __call__(self, x, with_reflectance=True):
        self.inputs.append((x.numpy(), with_reflectance))
        conf = np.tile(np.array([4.0, -4.0], np.float32), (1, self.n_priors, 1))
        conf[0, self.face_prior] = [-4.0, 4.0]
        return jt.zeros((1, self.n_priors, 4)), jt.array(conf), None


def test_detect_fn_returns_the_prior_box_in_pixels():
    h, w = IMAGE_HW
    # level 1 (step 8, second-shot size 32) has a 12 x 16 grid after level 0's 24 x 32
    level0, i, j = 24 * 32, 5, 7
    net = FakeNet(n_priors=24 * 32 + 12 * 16 + 6 * 8 + 3 * 4 + 2 * 2 + 1, face_prior=level0 + i * 16 + j)
    detect_fn = make_detect_fn(net, prior_spec(), paper_predict())
    image = np.random.default_rng(0).random((h, w, 3), dtype=np.float32)

    dets = detect_fn(image)

    # spec §4: cx = (j + 0.5) * step, cy = (i + 0.5) * step, side 32, all in pixels here
    cx, cy, side = (j + 0.5) * 8, (i + 0.5) * 8, 32
    np.testing.assert_allclose(dets[:, :4], [[cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]],
                               atol=1e-3)
    assert dets[0, 4] == pytest.approx(1 / (1 + np.exp(-8.0)), rel=1e-5)
    (x, with_reflectance), = net.inputs
    assert with_reflectance is False
    np.testing.assert_array_equal(x, image.transpose(2, 0, 1)[None])   # NCHW, no mean subtracted


def test_detect_fn_skips_inputs_too_small_for_the_backbone():
    net = FakeNet(n_priors=1, face_prior=0)
    detect_fn = make_detect_fn(net, prior_spec(), paper_predict())
    assert detect_fn(np.zeros((20, 200, 3), np.float32)).shape == (0, 5)
    assert net.inputs == []


def test_prior_steps_must_be_the_backbone_strides():
    with pytest.raises(UserError, match="priors.steps"):
        make_detect_fn(FakeNet(1, 0), prior_spec(steps=(4, 8, 16, 32, 64, 64)), paper_predict())


def test_normalised_to_pixels_scales_x_by_width_and_y_by_height():
    out = normalised_to_pixels(np.array([[0.25, 0.5, 0.75, 1.0, 0.9]]), (100, 200))
    np.testing.assert_allclose(out, [[50, 50, 150, 100, 0.9]])


# ------------------------------------------------------------- the loop (fake detector)

def test_prediction_keys_and_collisions(tmp_path):
    img = Path("WIDER_val/images/3--Riot/3_Riot_9.jpg")
    assert prediction_key(img, "wider") == ("3--Riot", "3_Riot_9")
    assert prediction_key(img, "darkface") == ("3_Riot_9",)
    with pytest.raises(UserError, match="inside an event folder"):
        prediction_key(Path("alone.jpg"), "wider")
    check_unique_outputs([Path("a/1.png"), Path("b/1.png")], "wider")
    with pytest.raises(UserError, match=r"a/1.png and b/1.jpg would both write .*1.txt"):
        check_unique_outputs([Path("a/1.png"), Path("b/1.jpg")], "darkface")


def test_predict_loop_writes_every_readable_image_and_skips_the_rest(tmp_path, capsys):
    images = write_images(tmp_path / "img" / "ev", ["a.jpg", "b.png"])
    broken = tmp_path / "img" / "ev" / "broken.jpg"
    broken.write_text("not an image")
    missing = tmp_path / "img" / "ev" / "missing.jpg"
    seen = []

    def fake_detect(image):
        seen.append(image.shape)
        return np.array([[1, 2, 11, 22, 0.9], [5, 5, 9, 9, 0.2]], np.float32)

    stats = predict_images([images[0], broken, images[1], missing], fake_detect,
                           paper_predict(single_scale=True), tmp_path / "out", "darkface")

    assert (stats.images, stats.skipped_images, stats.boxes) == (2, 2, 4)
    assert seen == [IMAGE_HW + (3,)] * 2           # one pass per image, read once
    preds = read_darkface_predictions(tmp_path / "out")
    assert sorted(preds) == ["a", "b"]
    np.testing.assert_allclose(preds["a"], [[1, 2, 11, 22, 0.9], [5, 5, 9, 9, 0.2]], atol=1e-6)
    err = capsys.readouterr().err
    assert str(broken) in err and str(missing) in err
    m = stats.metrics(single_scale=True)
    assert m["images"] == 2 and m["skipped_images"] == 2 and m["boxes_per_image"] == 2.0
    assert m["single_scale"] is True and m["seconds_per_image"] > 0


def test_unreadable_images_fail_before_any_prediction(tmp_path, capsys):
    """predict used to find an unreadable image only when it got to it, after predicting
    (and writing) the others, and then failed with that partial output on disk."""
    images = write_images(tmp_path / "img" / "ev", ["a.jpg", "b.png", "c.jpg"])
    broken = tmp_path / "img" / "ev" / "z.jpg"
    broken.write_bytes(images[0].read_bytes()[:-60])                 # a truncated JPEG, last in order
    calls = []

    def fake_detect(image):
        calls.append(image.shape)
        return np.array([[1, 2, 11, 22, 0.9]], np.float32)

    run = [*images, broken]
    with pytest.raises(UserError) as err:
        predict_images(run, fake_detect, paper_predict(single_scale=True), tmp_path / "out", "darkface",
                       max_skipped=0)
    msg = str(err.value)
    assert msg.startswith(f"1 of 4 images are unreadable, the first: {broken}: cannot read image (image file "
                          f"is truncated") and "\n" not in msg
    assert msg.endswith("; at most 0 allowed (predict.max_skipped_images); nothing was predicted")
    assert calls == [] and not (tmp_path / "out").exists()
    assert f"predict: skipped {broken}: cannot read image" in capsys.readouterr().err
    # within the limit: the others are predicted, the progress bar counts only them
    seen = []
    stats = predict_images(run, fake_detect, paper_predict(single_scale=True), tmp_path / "out", "darkface",
                           progress=lambda it: seen.append(len(it)) or it, max_skipped=1)
    assert (stats.images, stats.skipped_images, seen) == (3, 1, [3])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.txt", "b.txt", "c.txt"]


def test_empty_inputs_are_user_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(UserError, match="no image files"):
        folder_images(tmp_path / "empty")
    (tmp_path / "empty.txt").write_text("\n")
    params = write_narrow_params(tmp_path / "params.yaml")
    with pytest.raises(UserError, match="holds no images"):
        run_predict(["--weights", "unused.ckpt", "--list", str(tmp_path / "empty.txt"),
                     "--out", str(tmp_path / "out"), "--format", "wider", "--params", str(params)])


def test_predict_stage_fails_when_too_many_images_are_skipped(tmp_path, checkpoint, capsys):
    """predict used to exit 0 even when it had skipped every image."""
    from dainet.cli import run
    good = write_images(tmp_path / "image", ["1.png"], hw=(48, 64))[0]
    broken = tmp_path / "image" / "2.jpg"
    broken.write_bytes(b"")
    lst = write_list_file(tmp_path / "dark.txt", [broken, good])
    metrics = tmp_path / "predict.json"

    def stage(max_skipped: int, list_file: Path) -> str:
        params = write_narrow_params(tmp_path / "params.yaml", predict={"max_skipped_images": max_skipped})
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            run(stage_main("predict"), ["--weights", str(checkpoint), "--list", str(list_file),
                                             "--out", str(tmp_path / "pred"), "--format", "darkface",
                                             "--single-scale", "--metrics", str(metrics),
                                             "--params", str(params)])
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error: ")]
        return f"{exc.value.code} {err[-1] if err else ''}"

    assert stage(0, lst) == (f"2 error: 1 of 2 images are unreadable, the first: {broken}: "
                             f"cannot read image (empty file (0 bytes)); at most 0 allowed "
                             f"(predict.max_skipped_images); nothing was predicted")
    assert not metrics.exists()
    assert not (tmp_path / "pred").exists()    # checked before predicting: no partial output
    assert stage(1, lst) == "0 "
    assert json.loads(metrics.read_text())["skipped_images"] == 1
    only_broken = write_list_file(tmp_path / "broken.txt", [broken])
    assert stage(5, only_broken) == (f"2 error: no image could be read: all 1 were skipped, the first: "
                                     f"{broken}: cannot read image (empty file (0 bytes)); nothing was predicted")


# ----------------------------------------------------------------- checkpoints / methods

def test_method_from_checkpoint(tmp_path):
    dsfd = init_weights(build_model(paper_model(width=WIDTH), reflectance=False), seed=1)
    save_checkpoint(tmp_path / "dsfd.ckpt", {"model": dsfd.state_dict(), "method": "dsfd"})
    net, method = load_detector(tmp_path / "dsfd.ckpt", paper_model(width=WIDTH))
    assert method == "dsfd" and not net.reflectance
    np.testing.assert_array_equal(net.state_dict()["vgg.0.weight"].numpy(),
                                  dsfd.state_dict()["vgg.0.weight"].numpy())
    # without a method field a checkpoint is DAI-Net, which a DSFD state dict does not fit
    save_checkpoint(tmp_path / "plain.ckpt", {"model": dsfd.state_dict()})
    with pytest.raises(WeightError, match=r"plain.ckpt.*ref\."):
        load_detector(tmp_path / "plain.ckpt", paper_model(width=WIDTH))
    save_checkpoint(tmp_path / "odd.ckpt", {"model": dsfd.state_dict(), "method": "yolo"})
    with pytest.raises(WeightError, match="method 'yolo'"):
        load_detector(tmp_path / "odd.ckpt", paper_model(width=WIDTH))


# ------------------------------------------------------------- the stage, tiny network

def test_predict_stage_wider_from_list(tmp_path, checkpoint, tiny_net, wider_set):
    root, images, list_file = wider_set
    params = write_narrow_params(tmp_path / "params.yaml")
    out, metrics = tmp_path / "pred", tmp_path / "metrics" / "predict.json"
    assert run_predict(["--weights", str(checkpoint), "--list", str(list_file), "--out", str(out),
                        "--format", "wider", "--single-scale", "--metrics", str(metrics),
                        "--params", str(params)]) == 0

    preds = read_wider_predictions(out)
    assert sorted(preds) == [("0--Parade", "0_Parade_a"), ("0--Parade", "0_Parade_b"),
                             ("1--Handshaking", "1_Handshaking_a")]
    m = json.loads(metrics.read_text())
    assert {k: m[k] for k in ("images", "skipped_images", "single_scale", "method")} == \
        {"images": 3, "skipped_images": 0, "single_scale": True, "method": "dainet"}
    assert m["boxes_per_image"] == pytest.approx(sum(len(p) for p in preds.values()) / 3, abs=1e-3)
    assert m["seconds_per_image"] > 0

    # the file holds exactly the detector's boxes, as x y w h (+1 convention) and score
    # (the stage's config: the one pass at the profile's predict.base_scale)
    cfg = dataclasses.replace(load_params(params).section("predict").load(MultiScaleConfig), single_scale=True)
    direct = multi_scale_detect(read_image(images[2]), make_detect_fn(tiny_net, prior_spec(), cfg), cfg)
    got = preds["1--Handshaking", "1_Handshaking_a"]
    assert len(got) == len(direct) > 0
    np.testing.assert_allclose(got[:, :2], direct[:, :2], atol=1e-3)
    np.testing.assert_allclose(got[:, 2:4], direct[:, 2:4] - direct[:, :2] + 1, atol=2e-3)
    np.testing.assert_allclose(got[:, 4], direct[:, 4], atol=1e-6)


def test_predict_stage_darkface_folder_multi_scale(tmp_path, checkpoint):
    write_images(tmp_path / "dark" / "sub", ["7.png"], hw=(48, 64), seed=3)
    (tmp_path / "dark" / "7.txt").write_text("1\n1 1 5 5\n")   # a label file is not an image
    params = write_narrow_params(tmp_path / "params.yaml", predict={"single_scale": False})
    out, metrics = tmp_path / "pred", tmp_path / "predict.json"
    assert run_predict(["--weights", str(checkpoint), "--images", str(tmp_path / "dark"), "--out", str(out),
                        "--format", "darkface", "--metrics", str(metrics), "--params", str(params)]) == 0
    preds = read_darkface_predictions(out)
    assert list(preds) == ["7"]
    m = json.loads(metrics.read_text())
    assert m["images"] == 1 and m["single_scale"] is False
    assert m["boxes_per_image"] == len(preds["7"]) <= paper_predict().keep_top_k


# ------------------------------------------------------------ round trip through evaluate

def best_box_px(pred_xywh_score: np.ndarray) -> list[int]:
    """The highest-scoring prediction, rounded: a ground-truth face it must find again."""
    return np.round(pred_xywh_score[np.argmax(pred_xywh_score[:, 4]), :4]).astype(int).tolist()


def test_round_trip_wider_through_evaluate(tmp_path, checkpoint, wider_set):
    _, _, list_file = wider_set
    params = write_narrow_params(tmp_path / "params.yaml")
    pred = tmp_path / "pred"
    run_predict(["--weights", str(checkpoint), "--list", str(list_file), "--out", str(pred),
                 "--format", "wider", "--single-scale", "--params", str(params)])
    preds = read_wider_predictions(pred)
    events: dict = {}
    for (event, name), p in preds.items():
        events.setdefault(event, {})[name] = [best_box_px(p)]
    keeps = {s: {e: {n: [1] for n in names} for e, names in events.items()} for s in ("easy", "medium", "hard")}
    write_wider_gt(tmp_path / "gt", events, keeps)

    out = tmp_path / "wider.json"
    assert stage_main("evaluate")(["wider", "--pred", str(pred), "--gt", str(tmp_path / "gt"),
                                        "--out", str(out), "--params", str(params)]) == 0
    aps = json.loads(out.read_text())
    assert list(aps)[:3] == ["easy", "medium", "hard"] and list(aps)[-1] == "missing_predictions"
    assert aps.pop("missing_predictions") == 0
    aps = {s: aps[s] for s in ("easy", "medium", "hard")}
    # the stage scores the written files as the evaluator scores the detections read back:
    # each image's top box is its one face, so every face is found (recall 1) and AP is
    # what the other boxes' ranks leave of precision
    direct = evaluate_wider(preds, load_wider_ground_truth(tmp_path / "gt"))
    assert aps == pytest.approx({s: r.ap for s, r in direct.items()}, abs=1e-12)
    assert all(r.curve.recall[-1] == pytest.approx(1.0) for r in direct.values())


def test_round_trip_darkface_through_evaluate(tmp_path, checkpoint):
    images = write_images(tmp_path / "image", ["1.png", "2.png"], seed=5)
    (tmp_path / "image" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    images.insert(1, tmp_path / "image" / "3.png")
    params = write_narrow_params(tmp_path / "params.yaml", predict={"max_skipped_images": 1})
    pred, metrics = tmp_path / "pred", tmp_path / "predict.json"
    run_predict(["--weights", str(checkpoint), "--list", str(write_list_file(tmp_path / "dark.txt", images)),
                 "--out", str(pred), "--format", "darkface", "--single-scale", "--metrics", str(metrics),
                 "--params", str(params)])
    preds = read_darkface_predictions(pred)
    assert sorted(preds) == ["1", "2"]                 # the broken 3.png is skipped and counted
    m = json.loads(metrics.read_text())
    assert (m["images"], m["skipped_images"]) == (2, 1)
    (tmp_path / "label").mkdir()
    for stem, p in preds.items():
        x1, y1, x2, y2 = np.round(p[np.argmax(p[:, 4]), :4]).astype(int)
        (tmp_path / "label" / f"{stem}.txt").write_text(f"1\n{x1} {y1} {x2} {y2}\n")

    out = tmp_path / "darkface.json"
    assert stage_main("evaluate")(["darkface", "--pred", str(pred), "--labels", str(tmp_path / "label"),
                                        "--out", str(out), "--params", str(params)]) == 0
    m = json.loads(out.read_text())
    direct = evaluate_darkface(preds, read_darkface_labels(tmp_path / "label"))
    assert m["missing_predictions"] == 0 and m["ap"] == pytest.approx(direct.ap, abs=1e-12)
    assert direct.curve.recall[-1] == pytest.approx(1.0)   # each label is its image's top box
