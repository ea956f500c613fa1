"""Stage `evaluate`: WIDER FACE val / DARK FACE AP under the official WIDER scheme (spec §12).

    python stages/evaluate.py wider --pred DIR --gt DIR --out metrics/wider.json \
        [--curves-dir plots] [--params params.yaml]
    python stages/evaluate.py darkface --pred DIR --labels DIR --out metrics/darkface.json \
        [--curves-dir plots] [--params params.yaml]

Writes {"easy", "medium", "hard"} (WIDER) or {"ap"} (DARK FACE) as fractions, and with
--curves-dir the PR curves pr_wider_<setting>.csv / pr_darkface.csv
(threshold,precision,recall). Params: evaluate.iou_thresh, evaluate.thresholds and,
optional, evaluate.darkface_xyxy_as_xywh (default false: see dainet.evaluation.darkface).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from dainet.cli import run
from dainet.errors import UserError
from dainet.evaluation import (evaluate_darkface, evaluate_wider, read_darkface_labels,
                               read_darkface_predictions, read_wider_predictions,
                               write_curve_csv)
from dainet.params import load_params
from dainet.utils.fileio import write_json


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
        p.add_argument("--params", default="params.yaml")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    p = load_params(args.params).section("evaluate")
    iou_thresh = p.float("iou_thresh")
    n_thresholds = p.int("thresholds")
    if not 0.0 < iou_thresh <= 1.0:
        raise UserError(f"{args.params}: evaluate.iou_thresh: expected a value in (0, 1], got {iou_thresh}")

    if args.benchmark == "wider":
        results = evaluate_wider(read_wider_predictions(args.pred), args.gt, iou_thresh, n_thresholds)
        curves = {f"pr_wider_{setting}": r.curve for setting, r in results.items()}
        metrics = {setting: r.ap for setting, r in results.items()}
    else:
        result = evaluate_darkface(read_darkface_predictions(args.pred), read_darkface_labels(args.labels),
                                   iou_thresh, n_thresholds,
                                   xyxy_as_xywh=p.bool("darkface_xyxy_as_xywh", False))
        curves = {"pr_darkface": result.curve}
        metrics = {"ap": result.ap}

    write_json(args.out, metrics)
    if args.curves_dir:
        for name, curve in curves.items():
            write_curve_csv(Path(args.curves_dir) / f"{name}.csv", curve)
    print(" ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return 0


if __name__ == "__main__":
    run(main)
