"""Stage `visualize`: detections, reflectance and feature maps of a trained model, as PNGs.

    python stages/visualize.py --weights data/weights/model.ckpt --clean-list data/lists/val.txt \
        --dark-list data/lists/dark.txt --out plots/visualize [--params params.yaml]

For the first ``visualize.n_images`` images of each list (single-scale detection,
boxes scoring >= ``visualize.score_thresh``, thresholds of params ``predict``):

* ``<out>/detections_clean_<i>.png``, ``<out>/detections_dark_<i>.png`` (i from 0): the
  list's ground-truth faces framed in green, the predictions in red with their scores,
  and a caption strip below the image naming colours, threshold and counts;
* ``<out>/reflectance_<i>.png``: dark input | its reflectance R (DAI-Net only; a DSFD
  checkpoint has no reflectance decoder, and the stage says so);
* ``<out>/features_<layer>.png`` for each of ``visualize.feature_layers`` (x_shallow,
  of1..of6, ef1..ef6), from the first dark image: its first
  ``visualize.feature_channels`` (default 16) channels, each normalised on its own.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from dainet.cli import run   # dainet first: its runtime set-up precedes any Jittor import
from dainet.params import ParamError, load_params


def feature_layers() -> tuple[str, ...]:
    """The layer names ``visualize.feature_layers`` may hold (imports the network, so Jittor)."""
    from dainet.models.dainet import ENHANCED_NAMES, SOURCE_NAMES
    return ("x_shallow",) + SOURCE_NAMES + ENHANCED_NAMES


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True, help="checkpoint of the train stage")
    ap.add_argument("--clean-list", required=True, help="list file of well-lit images (e.g. WIDER val)")
    ap.add_argument("--dark-list", required=True, help="list file of low-light images (e.g. DARK FACE)")
    ap.add_argument("--out", required=True, help="folder for the PNGs")
    ap.add_argument("--params", default="params.yaml")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    params = load_params(args.params)   # checks the whole file before any work
    # imported only now: Jittor loads (and on a fresh machine compiles) after the params passed
    import numpy as np

    from dainet.formats.lists import read_list
    from dainet.formats.images import read_image
    from dainet.inference import MultiScaleConfig, multi_scale_detect
    from dainet.boxes.priors import PriorSpec
    from dainet.models.config import ModelConfig
    from dainet.inference.predictor import (feature_maps, load_detector, make_detect_fn,
                                            reflectance, select_device)
    from dainet.inference.visual import draw_detections, feature_grid, reflectance_picture, side_by_side
    from dainet.utils.fileio import write_image

    vis = params.section("visualize")
    n_images, score_thresh = vis.int("n_images"), vis.float("score_thresh")
    layers = vis.list("feature_layers", str)
    n_channels = vis.int("feature_channels", 16)
    known = feature_layers()
    unknown = [name for name in layers if name not in known]
    if unknown:
        raise ParamError(f"{args.params}: visualize.feature_layers: unknown {unknown}; "
                         f"choose from {', '.join(known)}")
    if n_images < 1:
        raise ParamError(f"{args.params}: visualize.n_images: expected >= 1, got {n_images}")
    cfg = dataclasses.replace(MultiScaleConfig.from_params(params.section("predict")), single_scale=True)
    priors = PriorSpec.from_params(params.section("priors"), ModelConfig.from_section(params.section("model")), shot=2)
    clean = read_list(args.clean_list)[:n_images]
    dark = read_list(args.dark_list)[:n_images]

    device = select_device()
    net, method = load_detector(args.weights, params.section("model"))
    detect_fn = make_detect_fn(net, priors, cfg)
    out = Path(args.out)

    for kind, entries in (("clean", clean), ("dark", dark)):
        for i, entry in enumerate(entries):
            rgb = read_image(entry.image)
            dets = multi_scale_detect(rgb, detect_fn, cfg)
            gt = entry.boxes_xyxy[entry.labels == 1]
            write_image(out / f"detections_{kind}_{i}.png", draw_detections(rgb, dets, score_thresh, gt))
            if kind == "dark" and net.reflectance:
                R = reflectance(net, rgb.astype(np.float32) / 255.0)
                write_image(out / f"reflectance_{i}.png",
                            side_by_side(rgb, reflectance_picture(R, rgb.shape[:2])))

    first_dark = read_image(dark[0].image).astype(np.float32) / 255.0
    for name, fmap in feature_maps(net, first_dark, layers).items():
        write_image(out / f"features_{name}.png", feature_grid(fmap, n_channels))

    note = "" if net.reflectance else " (DSFD checkpoint: no reflectance decoder, no reflectance_*.png)"
    print(f"visualize: {method} on {device}: {len(clean)} clean, {len(dark)} dark images, "
          f"{len(layers)} feature grids -> {out}{note}")
    return 0


if __name__ == "__main__":
    run(main)
