"""Stage `train_decomp`: the frozen Retinex decomposition network of DAI-Net (spec §6).

    python -m stages.train_decomp --train-list data/lists/train.txt --val-list data/lists/val.txt \
        --out data/weights/decomp.ckpt --metrics metrics/decomp.json --plots plots/decomp \
        [--src decomp.pth] [--params params.yaml]

With ``train_decomp.src`` (or ``--src``) naming the published ``decomp.pth``, the
weights are converted (read without PyTorch, names and shapes checked); otherwise
the network is trained here on (DarkISP(clean), clean) crops of the training list.
Writes the weights, metrics, a loss curve CSV and an input | R | I picture.

Calls :func:`dainet.training.decomp.train_decomp`.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from dainet.cli import run   # dainet first: its runtime set-up precedes any Jittor import
from dainet.params import load_params


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-list", required=True)
    ap.add_argument("--val-list", required=True)
    ap.add_argument("--out", required=True, help="decomposition weights (our checkpoint format)")
    ap.add_argument("--metrics", required=True)
    ap.add_argument("--plots", required=True, help="folder for loss.csv and preview.png")
    ap.add_argument("--src", default=None, help="published decomp.pth (default: train_decomp.src)")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)

    params = load_params(args.params)   # checks the whole file before any work
    # imported only now: Jittor loads (and on a fresh machine compiles) after the params passed
    from dainet.training.decomp import train_decomp
    from dainet.utils.fileio import write_image, write_json, write_text
    from dainet.weights.checkpoint import save_checkpoint

    t0 = time.perf_counter()
    done = train_decomp(params, args.train_list, args.val_list, args.src)
    src, rows, plots = done.src, done.rows, Path(args.plots)
    save_checkpoint(args.out, {"model": done.net.state_dict(), "kind": "decomp", "pretrained": bool(src),
                               "source": src or "trained"})
    write_text(plots / "loss.csv", "iteration,loss\n" + "".join(
        f"{r['iteration']},{r['loss']:.6g}\n" for r in rows))
    write_image(plots / "preview.png", done.preview)
    write_json(args.metrics, {"pretrained": bool(src), "iterations": done.iterations,
                              "final_loss": rows[-1]["loss"] if rows else None,
                              "first_loss": rows[0]["loss"] if rows else None,
                              "seconds": round(time.perf_counter() - t0, 2)})
    print(f"train_decomp: {'converted ' + src if src else f'trained {done.iterations} iterations'}"
          + (f", loss {rows[0]['loss']:.4f} -> {rows[-1]['loss']:.4f}" if rows else "") + f" -> {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
