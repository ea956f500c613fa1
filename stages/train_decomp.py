"""Stage `train_decomp`: the frozen Retinex decomposition network of DAI-Net (spec §6).

    python stages/train_decomp.py --train-list data/lists/train.txt --val-list data/lists/val.txt \
        --out data/weights/decomp.ckpt --metrics metrics/decomp.json --plots plots/decomp \
        [--src decomp.pth] [--params params.yaml]

With ``train_decomp.src`` (or ``--src``) naming the published ``decomp.pth``, the
weights are converted (read without PyTorch, names and shapes checked); otherwise
the network is trained here on (DarkISP(clean), clean) crops of the training list.
Writes the weights, metrics, a loss curve CSV and an input | R | I picture.
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
    import jittor as jt

    from dainet.data.darkisp import DarkISPConfig
    from dainet.formats.lists import read_list
    from dainet.formats.images import read_image
    from dainet.models.decomp import build_decomposer
    from dainet.models.init import init_weights
    from dainet.training.decomp import DecompTrainConfig, decomposition_preview, train_decomposer
    from dainet.utils.fileio import write_image, write_json, write_text
    from dainet.weights import load_into, read_pth
    from dainet.weights.checkpoint import save_checkpoint

    sec = params.section("train_decomp")
    src = args.src if args.src is not None else sec.str("src")
    cfg = DecompTrainConfig.from_params(sec)
    jt.set_global_seed(cfg.seed)
    net = build_decomposer(params.section("model"))
    plots = Path(args.plots)
    t0 = time.perf_counter()
    if src:
        load_into(net, read_pth(src), src)
        rows = []
    else:
        init_weights(net, cfg.seed)
        paths = [e.image for e in read_list(args.train_list)]
        rows = train_decomposer(net, paths, cfg, DarkISPConfig.from_params(params.section("darkisp")))
    net.eval()
    save_checkpoint(args.out, {"model": net.state_dict(), "kind": "decomp", "pretrained": bool(src),
                               "source": src or "trained"})
    write_text(plots / "loss.csv", "iteration,loss\n" + "".join(
        f"{r['iteration']},{r['loss']:.6g}\n" for r in rows))
    val = read_list(args.val_list)[: sec.int("n_preview")]
    preview = decomposition_preview(net, [read_image(e.image) for e in val], size=sec.int("preview_size"))
    write_image(plots / "preview.png", preview)
    write_json(args.metrics, {"pretrained": bool(src), "iterations": cfg.iterations if not src else 0,
                              "final_loss": rows[-1]["loss"] if rows else None,
                              "first_loss": rows[0]["loss"] if rows else None,
                              "seconds": round(time.perf_counter() - t0, 2)})
    print(f"train_decomp: {'converted ' + src if src else f'trained {cfg.iterations} iterations'}"
          + (f", loss {rows[0]['loss']:.4f} -> {rows[-1]['loss']:.4f}" if rows else "") + f" -> {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
