"""The paper profile's training step on a GPU: images/s and peak GPU memory, DAI-Net and DSFD.

The step is the `train` stage's (:func:`dainet.training.stage.seeded_step`: DarkISP, the
frozen decomposition net, forward, every loss, backward, clipping, SGD) on the paper profile
(``params/wider.yaml``: width 1.0, no normalisation, SGD), 640x640 crops, batch 4, on seeded
weights and random images with two faces each. Each method runs in its own process: warm-up
steps (Jittor compiles its kernels), then timed steps, each ended by a full device sync.
Peak memory is the most Jittor's GPU allocator held (in use + cached) after any step.

    python bench/gpu_step.py [--size 640] [--batch 4] [--steps 20] [--warmup 3] [--methods dainet dsfd]
                             [--device cuda] [--json OUT]

Reference, measured on the same kind of GPU (issue 22: H200, torch 2.11, ZPDu/DAI-Net at
f9f78ff, 640x640, batch 4, fp32): DAI-Net 18.9 images/s as published (its train.py
misspells cudnn.benchmark, so cuDNN autotuning is off), 22.7 with autotuning; DSFD 24.3 and 33.8.
Jittor autotunes its cuDNN convolutions (cudnnFind*) on first use of each shape.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = {"dainet": (18.9, 22.7), "dsfd": (24.3, 33.8)}   # images/s: as published, cudnn.benchmark on


def child(args) -> dict:
    sys.path.insert(0, str(ROOT))
    import dainet.jt  # noqa: F401  (configures Jittor before it loads)
    import jittor as jt
    import numpy as np

    from dainet.params import load_params, write_overrides
    from dainet.runtime import use_device
    from dainet.training.objective import total_loss
    from dainet.training.optim import clip_grad_norm
    from dainet.training.stage import seeded_step

    device = use_device(args.device)
    params = load_params(write_overrides(Path(args.tmp) / f"{args.methods[0]}.yaml",
                                         {"augment.image_size": args.size, "train.batch_size": args.batch},
                                         base=args.params))
    method = args.methods[0]
    net, opt, step = seeded_step(params, method=method, dsfd_input="dark")
    clip = params.section("train").value("clip_grad_norm", float)
    rng = np.random.default_rng(0)
    light = rng.random((args.batch, 3, args.size, args.size), dtype=np.float32)
    targets = np.array([[[0.1, 0.1, 0.3, 0.3, 1], [0.5, 0.5, 0.9, 0.8, 1]]] * args.batch, np.float32)
    peak, times, losses = 0, [], []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        terms, _ = step(jt.array(light), jt.array(targets), np.random.default_rng([0, i]))
        loss = total_loss(terms)
        opt.backward(loss)
        clip_grad_norm(opt, clip)
        opt.step()
        losses.append(float(loss.item()))
        jt.sync_all(True)
        dt = time.perf_counter() - t0
        if i >= args.warmup:
            times.append(dt)
        print(f"  {method} step {i + 1}/{args.warmup + args.steps}: {dt:.3f} s"
              + (" (warm-up: Jittor compiles on first use)" if i < args.warmup else ""), file=sys.stderr, flush=True)
        if device == "cuda":
            peak = max(peak, jt.get_mem_info().total_cuda_used)
    times = np.array(times)
    return {"method": method, "device": device, "size": args.size, "batch": args.batch,
            "images_per_s": args.batch * len(times) / times.sum(),
            "median_step_s": float(np.median(times)), "peak_gib": peak / 2 ** 30,
            "first_loss": losses[0], "last_loss": losses[-1], "finite": bool(np.isfinite(losses).all())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default=str(ROOT / "params" / "wider.yaml"))
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--methods", nargs="+", default=["dainet", "dsfd"], choices=["dainet", "dsfd"])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    import tempfile
    print(f"training step, paper profile, {args.size}x{args.size}, batch {args.batch}, "
          f"{args.steps} timed steps after {args.warmup} warm-up, device {args.device}", flush=True)
    print(f"{'method':8s} {'images/s':>9s} {'s/step':>8s} {'peak GiB':>9s}  reference images/s "
          "(published / autotuned)", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            cmd = [sys.executable, __file__, "--child", "--tmp", tmp, "--params", args.params,
                   "--size", str(args.size), "--batch", str(args.batch), "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--methods", method, "--device", args.device]
            r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=os.environ)   # progress on stderr
            if r.returncode:
                sys.exit(f"{method}: exit {r.returncode}")
            res = json.loads(r.stdout.strip().splitlines()[-1])
            results.append(res)
            ref = REFERENCE[method]
            print(f"{method:8s} {res['images_per_s']:9.2f} {res['median_step_s']:8.3f} {res['peak_gib']:9.2f}  "
                  f"{ref[0]} / {ref[1]}   ratio {res['images_per_s'] / ref[0]:.2f}x"
                  + ("" if res["finite"] else "  NON-FINITE LOSS"), flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
