"""Stage `predict`: face detections of a trained DAI-Net / DSFD for an image set (spec §10).

    python -m stages.predict --weights data/weights/model.ckpt (--list LIST | --images DIR) \
        --out DIR --format wider|darkface [--single-scale] [--metrics FILE] [--params params.yaml]

The variant (DAI-Net or the DSFD baseline) is the checkpoint's ``method``; the
architecture is params ``model``, the priors ``priors``, the test ``predict``
(multi-scale unless ``--single-scale`` or ``predict.single_scale: true``). Runs on
the GPU when Jittor finds one, else on the CPU.

Outputs: WIDER ``<out>/<event>/<image stem>.txt`` (the event is the image's folder,
as in ``WIDER_val/images/<event>/<name>.jpg``); DARK FACE ``<out>/<image stem>.txt``.
With ``--list`` only the list's image paths are used, not its boxes; with
``--images`` every image file below DIR is. Every image is decode-checked before
any is predicted: unreadable ones are reported and skipped, and the stage fails before
predicting or writing anything when more than ``predict.max_skipped_images`` are (or
when none can be read). ``--metrics``: images, skipped_images, seconds_per_image,
boxes_per_image, single_scale, method, device.

Calls :func:`dainet.inference.predictor.predict`.
"""
from __future__ import annotations

import argparse

from dainet.cli import run
from dainet.params import load_params


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from dainet.formats.predictions import FORMATS   # numpy only: no Jittor yet

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True, help="checkpoint of the train stage")
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--list", help="list file (spec §11); only its image paths are used")
    source.add_argument("--images", help="folder of images, searched recursively")
    ap.add_argument("--out", required=True, help="prediction folder")
    ap.add_argument("--format", required=True, choices=FORMATS)
    ap.add_argument("--single-scale", action="store_true", help="one pass per image, no voting")
    ap.add_argument("--metrics", help="metrics JSON to write")
    ap.add_argument("--params", default="params.yaml")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    params = load_params(args.params)
    from tqdm import tqdm

    from dainet.utils.fileio import write_json
    # Jittor compiles when it loads: only after the params have been read
    from dainet.inference.predictor import predict

    metrics = predict(params, args.weights, args.out, args.format, list_path=args.list, images_dir=args.images,
                      single_scale=args.single_scale,
                      progress=lambda it: tqdm(it, desc="predict", unit="img", dynamic_ncols=True))
    if args.metrics:
        write_json(args.metrics, metrics)
    scale = "single-scale" if metrics["single_scale"] else "multi-scale"
    print(f"predict: {metrics['method']} on {metrics['device']}, {scale}: {metrics['images']} images -> {args.out} "
          f"({metrics['seconds_per_image']:.3f} s/image, {metrics['boxes_per_image']:.1f} boxes/image, "
          f"{metrics['skipped_images']} skipped)")
    return 0


if __name__ == "__main__":
    run(main)
