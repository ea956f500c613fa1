"""Benchmark: WIDER FACE val evaluation at full size (3226 images, 750 predictions each).

Predictions per image: its ground-truth boxes jittered by up to 10 % of their size
(most still hit, a few miss) plus random boxes up to 750, all with random scores
(seeded). Times the ground-truth loading and `evaluate_wider` (all three settings);
with --io also writing and reading the prediction folder.

    python bench/eval_wider.py [--gt /work/shared/data/widerface_val_gt] [--io] [--repeat 3]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from dainet.evaluation import evaluate_wider, load_wider_ground_truth, read_wider_predictions

DEFAULT_GT = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "widerface_val_gt")


def synthetic_predictions(gt, per_image: int, seed: int) -> dict:
    """{(event, image): [per_image, 5] xywh + score}: jittered gt boxes + random boxes."""
    rng = np.random.default_rng(seed)
    preds = {}
    for key, gt_xywh in zip(gt.images, gt.boxes_xywh):
        faces = gt_xywh[:per_image]
        jitter = rng.uniform(-0.1, 0.1, faces.shape) * np.tile(np.maximum(faces[:, 2:4], 1), 2)
        n_random = per_image - len(faces)
        side = np.exp(rng.uniform(np.log(8), np.log(300), n_random))
        random = np.column_stack([rng.uniform(0, 1024, n_random), rng.uniform(0, 768, n_random),
                                  side, side * rng.uniform(0.8, 1.5, n_random)])
        boxes = np.concatenate([faces + jitter, random])
        preds[key] = np.column_stack([boxes, rng.random(per_image)])
    return preds


def write_predictions(preds: dict, folder: Path) -> None:
    for (event, name), p in preds.items():
        (folder / event).mkdir(parents=True, exist_ok=True)
        lines = [name, str(len(p))] + [" ".join(f"{v:.3f}" for v in row) for row in p]
        (folder / event / f"{name}.txt").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gt", default=DEFAULT_GT)
    ap.add_argument("--per-image", type=int, default=750)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--io", action="store_true", help="also time writing + reading the folder")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t0 = time.perf_counter()
    gt = load_wider_ground_truth(args.gt)
    t_gt = time.perf_counter() - t0
    preds = synthetic_predictions(gt, args.per_image, args.seed)
    n_pred = sum(len(p) for p in preds.values())
    print(f"ground truth: {len(gt.images)} images, {sum(len(b) for b in gt.boxes_xywh)} faces, "
          f"loaded in {t_gt:.2f} s; predictions: {n_pred}")

    if args.io:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            write_predictions(preds, Path(tmp))
            t_write = time.perf_counter() - t0
            t0 = time.perf_counter()
            preds = read_wider_predictions(tmp)
            print(f"write {t_write:.2f} s, read_wider_predictions {time.perf_counter() - t0:.2f} s")

    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        results = evaluate_wider(preds, gt)
        times.append(time.perf_counter() - t0)
    aps = " ".join(f"{s}={r.ap:.4f}" for s, r in results.items())
    print(f"evaluate_wider (3 settings, 1000 thresholds): best {min(times):.2f} s, "
          f"median {sorted(times)[len(times) // 2]:.2f} s over {args.repeat} runs; {aps}")


if __name__ == "__main__":
    main()
