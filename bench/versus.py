"""The port's DAI-Net training step against the published PyTorch code, in one run, on the CPU.

Both programs run the paper network (params/wider.yaml: width 1.0, no normalisation,
decomposition width 64) for one training step: DarkISP, the frozen decomposition net, the
forward pass, every loss, backward, clipping and SGD. Each measurement is a fresh process,
median of ``--steps`` steps after one warm-up; the programs alternate for ``--rounds`` rounds, so
machine noise falls on both. Then a per-part breakdown of both, Jittor's per-op profile of
the port's step, and oneDNN's own account of it (bench/onednn_passes.py: each convolution pass's
time and GFLOP/s, and the layout reorders).

The reference runs from a scratch interpreter that has torch and torchmetrics (never the
project's), on a checkout of ZPDu/DAI-Net, through bench/reference_step.py:

    python -m venv /tmp/ref && /tmp/ref/bin/pip install torch==2.13.0 torchmetrics numpy opencv-python-headless scipy easydict pillow
    git clone https://github.com/ZPDu/DAI-Net /tmp/DAI-Net
    python bench/versus.py --reference /tmp/DAI-Net --torch-python /tmp/ref/bin/python

``--pinned`` adds the port with oneDNN also capped at AVX2 (the runtime pins only Jittor's own
kernels to x86-64-v3), to measure what that cap costs, and ``--native`` the port with Jittor's
kernels unpinned (-march=native), to measure what the runtime's pinning costs
(docs/numerics.md). ``--malloc-default`` adds the port with glibc's allocator left at its
defaults (the runtime otherwise keeps freed memory, dainet.runtime.keep_freed_memory), to
measure what that setting gains (docs/speed.md).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import onednn_passes  # noqa: E402  (bench/onednn_passes.py)
import train_step  # noqa: E402  (bench/train_step.py: the port's child)
from dainet.runtime import PINNED_CACHE_NAME, PINNED_CC_FLAGS  # noqa: E402

PARTS = ("darkisp", "decomposition", "forward", "multibox", "other_losses", "backward", "clip_step")


def reference(args, parts: bool) -> dict:
    out = subprocess.run([args.torch_python, str(Path(__file__).resolve().parent / "reference_step.py"),
                          args.reference, str(args.size), str(args.batch), str(args.steps), "1" if parts else "0"],
                         capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))
    if out.returncode:
        raise SystemExit(f"reference step failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# everything pinned: the runtime's Jittor flags and cache, and oneDNN capped at AVX2
PINNED = {"cc_flags": PINNED_CC_FLAGS, "cache_name": PINNED_CACHE_NAME,
          "DNNL_MAX_CPU_ISA": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


# nothing pinned: Jittor's own -march=native kernels, in a kernel cache of their own
NATIVE = {"cc_flags": "", "cache_name": "dainet_native"}
VARIANTS = {"pinned": PINNED, "native": NATIVE, "malloc default": train_step.MALLOC_DEFAULT}


def port(args, tmp: str, parts: bool, variant: str = "", top: int = 0) -> dict:
    env = dict(os.environ, **VARIANTS.get(variant, {}))
    return train_step.child(0, args.size, args.batch, args.steps, parts, True, tmp,
                            profile="params/wider.yaml", env=env, top=top)


def onednn_rows(args, tmp: str) -> list[dict]:
    """The port's oneDNN primitives per step (bench/onednn_passes.py), over a warm-up and one step."""
    _, stdout = train_step.child(0, args.size, args.batch, 1, False, True, tmp, profile="params/wider.yaml",
                                 env=dict(os.environ, ONEDNN_VERBOSE="1"), stdout=True)
    return onednn_passes.summarise(stdout, steps=2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", required=True, help="checkout of ZPDu/DAI-Net")
    ap.add_argument("--torch-python", required=True, help="an interpreter with torch and torchmetrics")
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch's threads (Jittor uses all cores)")
    ap.add_argument("--pinned", action="store_true", help="also time the port with oneDNN capped at AVX2")
    ap.add_argument("--native", action="store_true", help="also time the port with Jittor's kernels unpinned")
    ap.add_argument("--malloc-default", action="store_true",
                    help="also time the port with glibc's allocator at its defaults")
    ap.add_argument("--top", type=int, default=15, help="ops shown from the port's profile (0: none)")
    args = ap.parse_args()
    print(f"DAI-Net paper-network training step, {args.size}x{args.size}, batch {args.batch}, CPU, "
          f"{os.cpu_count()} cores; median of {args.steps} steps after warm-up, s/step")
    variants = [v for v in VARIANTS if getattr(args, v.replace(" ", "_"))]
    rows = {"reference": [], "port": [], **{f"port {v}": [] for v in variants}}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            ref = reference(args, False)
            rows["reference"].append(ref["total"])
            rows["port"].append(port(args, tmp, False)["total"])
            for v in variants:
                rows[f"port {v}"].append(port(args, tmp, False, v)["total"])
            line = ", ".join(f"{k} {v[-1]:.2f}" for k, v in rows.items() if v)
            print(f"  round {r + 1}: {line}; port/reference {rows['port'][-1] / rows['reference'][-1]:.2f}"
                  + "".join(f", {v}/reference {rows[f'port {v}'][-1] / rows['reference'][-1]:.2f}"
                            for v in variants),
                  flush=True)
        print(f"  reference: torch {ref['torch']}, {ref['threads']} threads")
        ratio = statistics.median(p / q for p, q in zip(rows["port"], rows["reference"]))
        print(f"ratio port/reference (median of rounds): {ratio:.2f}")
        for v in variants:
            cost = statistics.median(p / q for p, q in zip(rows[f"port {v}"], rows["port"]))
            print(f"port {v}/port (median of rounds): {cost:.2f}")
        ref_parts, port_parts = reference(args, True), port(args, tmp, True)
        print(f"\n{'part':<14}{'reference':>10}{'port':>8}{'ratio':>7}")
        for k in (*PARTS, "total"):
            print(f"{k:<14}{ref_parts[k]:>10.3f}{port_parts[k]:>8.3f}{port_parts[k] / ref_parts[k]:>7.2f}")
        print("(parts synchronised one by one: their sum is a little above the fused step)")
        if args.top:
            prof = port(args, tmp, False, top=args.top)
            print(f"\nport, Jittor profile of one step: {prof['all_ops']:.2f} s in ops; the largest:")
            for name, sec in prof["profile"]:
                print(f"  {sec:7.3f}  {name}")
        rows = onednn_rows(args, tmp)
        print(f"\nport, oneDNN's own times per step (ONEDNN_VERBOSE): {sum(r['ms'] for r in rows) / 1e3:.2f} s")
        print(f"{'kind':<13}{'implementation':<16}{'pass':<18}{'s':>7}{'calls':>7}{'GFLOP/s':>9}")
        for r in rows:
            rate = f"{r['gflops']:9.0f}" if r["gflops"] else ""
            print(f"{r['kind']:<13}{r['impl']:<16}{r['pass']:<18}{r['ms'] / 1e3:7.3f}{r['calls']:7.0f}{rate}")


if __name__ == "__main__":
    main()
