"""Stage `evaluate`: WIDER FACE val / DARK FACE AP under the official WIDER scheme (spec §12).

    python -m stages.evaluate wider --pred DIR --gt DIR --out metrics/wider.json \
        [--curves-dir plots] [--replicates FILE] [--params params.yaml]
    python -m stages.evaluate darkface --pred DIR --labels DIR --out metrics/darkface.json \
        [--curves-dir plots] [--replicates FILE] [--params params.yaml]

Writes {"easy", "medium", "hard"} (WIDER) or {"ap"} (DARK FACE) as fractions, then
"missing_predictions" (evaluated images without a prediction file), and with
--curves-dir the PR curves pr_wider_<setting>.csv / pr_darkface.csv
(threshold,precision,recall). With evaluate.bootstrap N > 0 each AP also gets
"<ap>_ci_low" / "<ap>_ci_high": the 95 % percentile interval over N resamples of the
evaluated images (seed evaluate.bootstrap_seed), the evaluation's own uncertainty; and
with --replicates FILE the AP of every resample, columns replicate,<ap>... (nan: a resample
without a counted face). The resamples depend on the seed and the number of images only, so
`python -m dainet compare` pairs two runs' replicates over the same images.
Params: evaluate.iou_thresh, evaluate.thresholds, evaluate.bootstrap, evaluate.bootstrap_seed,
evaluate.max_missing_predictions (more images without a prediction file fail the
stage: the scheme would score them as images without detections) and
evaluate.darkface_xyxy_as_xywh (false: see dainet.evaluation.darkface); read as
:class:`dainet.evaluation.common.EvaluateConfig`.

Calls :func:`dainet.evaluation.evaluate_wider` or :func:`dainet.evaluation.evaluate_darkface`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from dainet.cli import run
from dainet.errors import UserError
from dainet.params import load_params


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="benchmark", required=True)
    wider = sub.add_parser("wider", help="WIDER FACE val: easy / medium / hard AP")
    wider.add_argument("--gt", required=True, help="folder of wider_face_val.mat and wider_*_val.mat")
    dark = sub.add_parser("darkface", help="DARK FACE AP")
    dark.add_argument("--labels", required=True, help="folder of <image>.txt label files")
    for p in (wider, dark):
        p.add_argument("--pred", required=True, help="prediction folder")
        p.add_argument("--out", required=True, help="metrics JSON to write")
        p.add_argument("--curves-dir", help="folder for the PR curve CSV files")
        p.add_argument("--replicates", help="CSV to write each AP's bootstrap replicates to "
                                            "(with evaluate.bootstrap > 0)")
        p.add_argument("--params", default="params.yaml")
    return parser.parse_args(argv)


def check_missing(missing: list, n_images: int, max_missing: int, describe) -> None:
    """UserError when more than ``max_missing`` of the ``n_images`` evaluated images have
    no prediction file; ``describe(key)`` is that file's path."""
    if len(missing) > max_missing:
        raise UserError(f"{len(missing)} of {n_images} evaluated images have no prediction file, the first: "
                        f"{describe(missing[0])}; the scheme would score them as images without detections "
                        f"(the official tools stop instead); at most {max_missing} allowed "
                        f"(evaluate.max_missing_predictions); predict every image of the set, those without "
                        f"faces included")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from dainet.evaluation import (evaluate_darkface, evaluate_wider, load_wider_ground_truth,
                                   missing_predictions, read_darkface_labels, read_darkface_predictions,
                                   read_wider_predictions, write_curve_csv)
    from dainet.evaluation.common import EvaluateConfig, write_csv
    cfg = load_params(args.params).section("evaluate").load(EvaluateConfig)
    max_missing, bootstrap = cfg.max_missing_predictions, cfg.bootstrap
    from dainet.utils.fileio import write_json

    pred_dir = Path(args.pred)
    if args.benchmark == "wider":
        gt = load_wider_ground_truth(args.gt)
        predictions = read_wider_predictions(pred_dir)
        missing = missing_predictions(predictions, gt.images)
        check_missing(missing, len(gt.images), max_missing, lambda k: pred_dir / k[0] / f"{k[1]}.txt")
        results = evaluate_wider(predictions, gt, cfg.iou_thresh, cfg.thresholds, bootstrap, cfg.bootstrap_seed)
        curves = {f"pr_wider_{setting}": r.curve for setting, r in results.items()}
    else:
        labels = read_darkface_labels(args.labels)
        predictions = read_darkface_predictions(pred_dir)
        missing = missing_predictions(predictions, sorted(labels))
        check_missing(missing, len(labels), max_missing, lambda stem: pred_dir / f"{stem}.txt")
        results = {"ap": evaluate_darkface(predictions, labels, cfg.iou_thresh, cfg.thresholds,
                                           xyxy_as_xywh=cfg.darkface_xyxy_as_xywh, bootstrap=bootstrap,
                                           seed=cfg.bootstrap_seed)}
        curves = {"pr_darkface": results["ap"].curve}
    metrics = {name: r.ap for name, r in results.items()}
    for name, r in results.items():
        if r.ci is not None:
            metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"] = r.ci
    metrics["missing_predictions"] = len(missing)

    write_json(args.out, metrics)
    if args.replicates:   # header only without a bootstrap: the declared output exists
        write_csv(args.replicates, [{"replicate": b, **{name: float(r.replicates[b]) for name, r in results.items()}}
                                    for b in range(bootstrap)], columns=["replicate", *results])
    if args.curves_dir:
        for name, curve in curves.items():
            write_curve_csv(Path(args.curves_dir) / f"{name}.csv", curve)
    print(" ".join(f"{name}={r.ap:.4f}" + (f" [{r.ci[0]:.4f}, {r.ci[1]:.4f}]" if r.ci else "")
                   for name, r in results.items())
          + f" ({len(missing)} images without a prediction file)")
    return 0


if __name__ == "__main__":
    run(main)
