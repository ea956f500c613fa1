"""The recipe learns: a few dozen iterations on a tiny, easy generated set find a face.

This guards the sample profile's from-scratch recipe (params.yaml: model.norm, the
optimiser, warm-up, schedule, init) against later changes: the training loss must fall
and, on a training image, the top-scoring detection must be a face (IoU >= 0.5 with a
ground-truth box). Everything but the sizes comes from params.yaml itself.
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import ROOT, stage_main, write_params

pytestmark = pytest.mark.slow

EASY = {  # big, clear faces on small images, no distractors, occlusion or blur
    "sample.n_train": 8, "sample.n_val": 4, "sample.n_dark": 2, "sample.n_events": 1,
    "sample.image_side": [128, 160], "sample.face_size": [40, 80], "sample.faces_per_image": [1, 2],
    "sample.zero_face_fraction": 0.0, "sample.distractors": [0, 0], "sample.occlusion_prob": 0.0,
    "sample.blur_prob": 0.0,
    "augment.image_size": 96, "augment.anchor_sampling_prob": 0.0,
    "train.method": "dsfd", "train.dsfd_input": "clean", "train.device": "cpu",
    "train.batch_size": 4, "train.max_iter": 60, "train.max_epochs": 1000, "train.log_every": 5,
    "train.image_every": 0, "train.checkpoint_every": 1000,
}


def test_a_few_dozen_iterations_detect_a_face(tmp_path):
    import dainet  # noqa: F401
    from dainet.boxes.iou import iou_xyxy_np
    from dainet.formats.lists import read_list
    from dainet.data.prepare import prepare_lists
    from dainet.data.sample import SampleConfig, write_sample
    from dainet.data.synth import SceneConfig
    from dainet.formats.images import read_image
    from dainet.inference.multiscale import MultiScaleConfig
    from dainet.boxes.priors import PriorSpec
    from dainet.inference.predictor import load_detector, make_detect_fn
    from dainet.models.config import ModelConfig
    from dainet.params import load_params

    params = write_params(tmp_path / "params.yaml", EASY, base=ROOT / "params.yaml")
    p = load_params(params)
    sample = p.section("sample")
    write_sample(tmp_path / "sample", sample.load(SampleConfig, scene=sample.load(SceneConfig)))
    lists = tmp_path / "lists"
    prepare_lists(tmp_path / "sample" / "widerface", tmp_path / "sample" / "darkface", lists)
    assert stage_main("convert_weights")(["--dst", str(tmp_path / "init.ckpt"), "--params", str(params)]) == 0
    out = tmp_path / "train"
    assert stage_main("train")([
        "--train-list", str(lists / "train.txt"), "--val-list", str(lists / "val.txt"),
        "--init", str(tmp_path / "init.ckpt"), "--decomp", str(tmp_path / "init.ckpt"),
        "--checkpoints", str(out / "ckpt"), "--out", str(out / "model.ckpt"),
        "--metrics", str(out / "train.json"), "--plots", str(out / "plots"), "--params", str(params)]) == 0

    with open(out / "plots" / "loss.csv") as f:
        totals = [float(r["total"]) for r in csv.DictReader(f)]
    assert np.mean(totals[-3:]) < 0.7 * np.mean(totals[:2]), totals

    # the last weights (model.ckpt is the best by validation loss; both must detect)
    net, _ = load_detector(out / "model.ckpt", p.section("model"))
    detect_fn = make_detect_fn(net, PriorSpec.for_shot(p.section("priors"), p.section("model").load(ModelConfig), 2),
                               p.section("predict").load(MultiScaleConfig))
    hits = 0
    entries = read_list(lists / "train.txt")
    for entry in entries:
        dets = detect_fn(read_image(entry.image).astype(np.float32) / 255.0)
        if len(dets) and iou_xyxy_np(dets[:1, :4], entry.boxes_xyxy).max() >= 0.5:
            hits += 1
    assert hits >= 1, f"no training image's top detection is a face ({json.load(open(out / 'train.json'))})"
