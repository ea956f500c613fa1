"""Stage `convert_weights`: the initial DAI-Net weights, converted from published files or seeded.

DVC stage form (kind and source from params ``convert``)::

    python -m stages.convert_weights --dst data/weights/init.ckpt --metrics metrics/convert.json \
        [--params params.yaml]

``convert.dainet_src`` non-empty: convert that whole checkpoint (kind ``dainet``: DAI-Net, or
DSFD on ``model.backbone``); else ``convert.vgg_src`` / ``convert.resnet_src`` non-empty: the
VGG16 backbone file or torchvision's ResNet file on a seeded initialisation (kind ``vgg`` /
``resnet``); else a seeded initialisation alone (kind ``init``, ``pretrained: false``).

Manual form, one published file (``--metrics`` optional)::

    python -m stages.convert_weights --kind vgg|resnet|decomp|dainet --src FILE.pth --dst FILE \
        [--metrics FILE.json] [--params params.yaml]

Seeded initialisation (spec §9): every conv Xavier-uniform with zero bias, L2Norm weights
the constants ``model.l2norm_scales``, seed ``convert.seed``. Published weights need
``model.width: 1.0``. The checkpoint (dainet.weights.checkpoint format) holds
``{"model": state dict, "kind", "pretrained", "source", "seed", "width"}``; ``model`` is
the full DAI-Net (``ref.*`` included; the DSFD baseline drops it when training), DSFD on a
ResNet backbone, or for
``--kind decomp`` the decomposition network (which ``model.width`` does not scale;
``width`` is recorded all the same). Metrics (flat JSON): pretrained, kind, source,
seed, parameters, tensors_loaded, width.

Calls :func:`dainet.weights.convert.convert_weights`.
"""
from __future__ import annotations

import argparse
import time

from dainet.cli import run   # dainet first: its runtime set-up precedes any Jittor import
from dainet.params import load_params
from dainet.weights.convert import KINDS   # numpy only, no Jittor


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=KINDS, help="published file kind (default: from params convert.*)")
    ap.add_argument("--src", help="the published .pth file (with --kind)")
    ap.add_argument("--dst", required=True, help="checkpoint to write")
    ap.add_argument("--metrics", help="metrics JSON to write")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    if (args.kind is None) != (args.src is None):
        ap.error("--kind and --src go together (neither: kind and source from params convert.*)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    params = load_params(args.params)   # checks the whole file before any work
    # Jittor loads (and on a fresh machine compiles) inside, after the params passed
    from dainet.utils.fileio import write_json
    from dainet.weights import save_checkpoint
    from dainet.weights.convert import convert_weights

    t0 = time.perf_counter()
    state, record, loaded = convert_weights(params, args.kind, args.src)
    save_checkpoint(args.dst, {"model": state, **record})
    n_params = int(sum(v.size for v in state.values()))
    if args.metrics:
        write_json(args.metrics, {**record, "parameters": n_params, "tensors_loaded": loaded})
    kind, src, seed = record["kind"], record["source"], record["seed"]
    what = f"{kind} weights from {src}" if record["pretrained"] else f"seeded initialisation (seed {seed})"
    print(f"convert_weights: {what}, {len(state)} tensors, {n_params} parameters, "
          f"width {record['width']} -> {args.dst} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    run(main)
