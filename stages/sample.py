"""Stage ``sample``: render the embedded miniature WIDER FACE and DARK FACE releases.

    python -m stages.sample --out data/sample [--params params.yaml] [--workers N]

Calls :func:`dainet.data.sample.write_sample`.
"""
from __future__ import annotations

import argparse
import os
import time

from dainet import cli   # dainet first: its runtime set-up precedes any Jittor import
from dainet.params import load_params


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder that receives widerface/ and darkface/")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8),
                    help="rendering processes (the output does not depend on it)")
    args = ap.parse_args(argv)
    params = load_params(args.params)   # checks the whole file before any work

    # imported only now: a bad params file fails at once, without loading OpenCV and numpy
    from tqdm import tqdm

    from dainet.data.sample import SampleConfig, write_sample
    from dainet.data.synth import SceneConfig

    sec = params.section("sample")
    cfg = sec.load(SampleConfig, scene=sec.load(SceneConfig))
    start = time.perf_counter()
    s = write_sample(args.out, cfg, workers=args.workers,
                     progress=lambda it, total: tqdm(it, total=total, desc="sample", unit="img"))
    faces = sum(len(r.boxes_xywh) for r in s.train + s.val) + sum(len(d.boxes_xyxy) for d in s.dark)
    print(f"sample: {len(s.train)} train, {len(s.val)} val, {len(s.dark)} dark images, "
          f"{faces} faces, seed {cfg.seed} -> {args.out} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    cli.run(main)
