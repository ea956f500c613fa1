"""DAI-Net learns: a short run of the joint objective on a tiny, easy generated set finds faces
on held-out images that the same network, untrained, does not.

This guards the sample profile's from-scratch recipe (params.yaml: model.norm, the optimiser,
warm-up, schedule, init) and the DAI-Net objective against later changes: the run passes the
clean warm-up into the joint phase (reflectance, enhancement and mutual terms non-zero), the
training loss falls, and on held-out images (the generated val split, never trained on) the
trained network's top detection is a face (IoU >= 0.5) on clearly more images than the
untrained one's. Everything but the sizes comes from params.yaml itself.
"""
from __future__ import annotations

import csv

import numpy as np
import pytest

from conftest import ROOT, stage_main, write_params

pytestmark = pytest.mark.slow

EASY = {  # big, clear faces on small images, no distractors, occlusion or blur
    "sample.n_train": 32, "sample.n_val": 16, "sample.n_dark": 2, "sample.n_events": 1,
    "sample.image_side": [128, 160], "sample.face_size": [40, 80], "sample.faces_per_image": [1, 2],
    "sample.zero_face_fraction": 0.0, "sample.distractors": [0, 0], "sample.occlusion_prob": 0.0,
    "sample.blur_prob": 0.0,
    "augment.image_size": 96, "augment.anchor_sampling_prob": 0.0,
    "train.method": "dainet", "train.device": "cpu", "train.clean_warmup_iters": 50,
    "train.batch_size": 4, "train.max_iter": 200, "train.max_epochs": 1000, "train.log_every": 5,
    "train.image_every": 0, "train.checkpoint_every": 1000,
}
MARGIN = 5   # of the 16 held-out images: trained hits - untrained hits (measured: 9 - 0)


def top_detection_hits(weights, lists, p) -> int:
    """Held-out (val) images whose top detection overlaps a face at IoU >= 0.5."""
    from dainet.boxes.iou import iou_xyxy_np
    from dainet.boxes.priors import PriorSpec
    from dainet.formats.images import read_image
    from dainet.formats.lists import read_list
    from dainet.inference.multiscale import MultiScaleConfig
    from dainet.inference.predictor import load_detector, make_detect_fn
    from dainet.models.config import ModelConfig

    net, _ = load_detector(weights, p.section("model"))
    detect_fn = make_detect_fn(net, PriorSpec.for_shot(p.section("priors"), p.section("model").load(ModelConfig), 2),
                               p.section("predict").load(MultiScaleConfig))
    hits = 0
    for entry in read_list(lists / "val.txt"):
        dets = detect_fn(read_image(entry.image).astype(np.float32) / 255.0)
        hits += bool(len(dets) and iou_xyxy_np(dets[:1, :4], entry.boxes_xyxy).max() >= 0.5)
    return hits


def test_a_short_dainet_run_finds_held_out_faces_that_the_untrained_net_does_not(tmp_path):
    import dainet.jt  # noqa: F401  (configures Jittor before it loads)
    from dainet.data.prepare import prepare_lists
    from dainet.data.sample import SampleConfig, write_sample
    from dainet.data.synth import SceneConfig
    from dainet.models.decomp import build_decomposer
    from dainet.models.init import init_weights
    from dainet.params import load_params
    from dainet.weights.checkpoint import save_checkpoint

    params = write_params(tmp_path / "params.yaml", EASY, base=ROOT / "params.yaml")
    p = load_params(params)
    sample = p.section("sample")
    write_sample(tmp_path / "sample", sample.load(SampleConfig, scene=sample.load(SceneConfig)))
    lists = tmp_path / "lists"
    prepare_lists(tmp_path / "sample" / "widerface", tmp_path / "sample" / "darkface", lists)
    assert stage_main("convert_weights")(["--dst", str(tmp_path / "init.ckpt"), "--params", str(params)]) == 0
    # a seeded, untrained decomposition net: its I maps still feed the joint objective
    save_checkpoint(tmp_path / "decomp.ckpt", {"model": init_weights(build_decomposer(p.section("model")), 0).state_dict()})
    out = tmp_path / "train"
    assert stage_main("train")([
        "--train-list", str(lists / "train.txt"), "--val-list", str(lists / "val.txt"),
        "--init", str(tmp_path / "init.ckpt"), "--decomp", str(tmp_path / "decomp.ckpt"),
        "--checkpoints", str(out / "ckpt"), "--out", str(out / "model.ckpt"),
        "--metrics", str(out / "train.json"), "--plots", str(out / "plots"), "--params", str(params)]) == 0

    with open(out / "plots" / "loss.csv") as f:
        rows = list(csv.DictReader(f))
    joint = [r for r in rows if int(r["iteration"]) > EASY["train.clean_warmup_iters"]]
    assert joint and all(float(r[k]) > 0 for r in joint for k in ("ref", "enh", "mutual")), rows[-1]
    detection = [sum(float(r[k]) for k in ("loc1", "conf1", "loc2", "conf2")) for r in rows]
    assert np.mean(detection[-3:]) < 0.7 * np.mean(detection[:2]), detection

    trained = top_detection_hits(out / "model.ckpt", lists, p)
    untrained = top_detection_hits(tmp_path / "init.ckpt", lists, p)
    assert trained - untrained >= MARGIN, f"held-out hits: trained {trained}, untrained {untrained} of 16"
