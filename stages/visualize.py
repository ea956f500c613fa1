"""Stage `visualize`: detections, reflectance and feature maps of a trained model, as PNGs.

    python -m stages.visualize --weights data/weights/model.ckpt --clean-list data/lists/val.txt \
        --dark-list data/lists/dark.txt --out plots/visualize [--params params.yaml]

For the first ``visualize.n_images`` images of each list (the predict stage's test, params
``predict``: multi-scale unless ``predict.single_scale``; boxes scoring >= ``visualize.score_thresh``):

* ``<out>/detections_clean_<i>.png``, ``<out>/detections_dark_<i>.png`` (i from 0): the
  list's ground-truth faces framed in green, the predictions in red with their scores,
  and a caption strip below the image naming colours, threshold and counts;
* ``<out>/reflectance_<i>.png``: dark input | its reflectance R (DAI-Net only; a DSFD
  checkpoint has no reflectance decoder, and the stage says so);
* ``<out>/features_<layer>.png`` for each of ``visualize.feature_layers`` (x_shallow,
  of1..of6, ef1..ef6), from the first dark image: its first
  ``visualize.feature_channels`` (default 16) channels, each normalised on its own.

Calls :func:`dainet.inference.visual.visualize`.
"""
from __future__ import annotations

import argparse

from dainet.cli import run   # dainet first: its runtime set-up precedes any Jittor import
from dainet.params import load_params


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
    from dainet.inference.visual import visualize   # numpy only; Jittor loads inside, after the params passed

    done = visualize(params, args.weights, args.clean_list, args.dark_list, args.out)
    note = "" if done["reflectance"] else " (DSFD checkpoint: no reflectance decoder, no reflectance_*.png)"
    print(f"visualize: {done['method']} on {done['device']}: {done['clean']} clean, {done['dark']} dark images, "
          f"{done['feature_grids']} feature grids -> {args.out}{note}")
    return 0


if __name__ == "__main__":
    run(main)
