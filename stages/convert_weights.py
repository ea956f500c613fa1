"""Stage `convert_weights`: the initial DAI-Net weights, converted from published files or seeded.

DVC stage form (kind and source from params ``convert``)::

    python stages/convert_weights.py --dst data/weights/init.ckpt --metrics metrics/convert.json \
        [--params params.yaml]

``convert.dainet_src`` non-empty: convert that whole DAI-Net checkpoint (kind ``dainet``);
else ``convert.vgg_src`` non-empty: the VGG16 backbone file on a seeded initialisation
(kind ``vgg``); else a seeded initialisation alone (kind ``init``, ``pretrained: false``).

Manual form, one published file (``--metrics`` optional)::

    python stages/convert_weights.py --kind vgg|decomp|dainet --src FILE.pth --dst FILE \
        [--metrics FILE.json] [--params params.yaml]

Seeded initialisation (spec §9): every conv Xavier-uniform with zero bias, L2Norm weights
the constants ``model.l2norm_scales``, seed ``convert.seed``. Published weights need
``model.width: 1.0``. The checkpoint (dainet.weights.checkpoint format) holds
``{"model": state dict, "kind", "pretrained", "source", "seed", "width"}``; ``model`` is
the full DAI-Net (``ref.*`` included; the DSFD baseline drops it when training), or for
``--kind decomp`` the decomposition network (which ``model.width`` does not scale;
``width`` is recorded all the same). Metrics (flat JSON): pretrained, kind, source,
seed, parameters, tensors_loaded, width.
"""
from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from dainet.cli import run   # dainet first: its runtime set-up precedes any Jittor import
from dainet.params import load_params

if TYPE_CHECKING:
    import numpy as np

    from dainet.models import ModelConfig

SEEDED = "init"   # the kind recorded when no file is converted


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from dainet.weights.convert import KINDS   # numpy only, no Jittor

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


def source_from_params(convert) -> tuple[str, str]:
    """``(kind, source)`` from the params ``convert`` section; a DAI-Net file wins over VGG."""
    if convert.str("dainet_src"):
        return "dainet", convert.str("dainet_src")
    if convert.str("vgg_src"):
        return "vgg", convert.str("vgg_src")
    return SEEDED, ""


def numpy_state(net) -> dict[str, np.ndarray]:
    return {name: var.numpy() for name, var in net.state_dict().items()}


def convert(kind: str, src: str, cfg: ModelConfig, seed: int,
            backbone_init: str = "kaiming", neck_init: str = "xavier") -> tuple[dict[str, np.ndarray], int]:
    """``(state dict, tensors taken from src)`` for one kind; the file is read before any model work."""
    # imported here, not at module level: Jittor loads (and may compile) only after the params passed
    from dainet.models import build_decomposer, build_model, init_weights
    from dainet.weights import read_pth
    from dainet.weights.convert import convert_backbone, convert_model

    if kind == SEEDED:
        return numpy_state(init_weights(build_model(cfg), seed, backbone_init, neck_init)), 0
    published = read_pth(src)     # refuses unsafe or corrupt files before anything else runs
    if kind == "decomp":
        state = convert_model(build_decomposer(cfg).state_dict(), published, src)
    elif kind == "dainet":
        state = convert_model(build_model(cfg).state_dict(), published, src)
    else:
        state = convert_backbone(numpy_state(init_weights(build_model(cfg), seed, neck=neck_init)), published, src)
    return state, len(published)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    params = load_params(args.params)   # checks the whole file before any work
    # imported only now: Jittor loads (and on a fresh machine compiles) after the params passed
    from dainet.models import ModelConfig
    from dainet.utils.fileio import write_json
    from dainet.weights import save_checkpoint
    from dainet.weights.convert import WIDTH_SCALED_KINDS, require_published_width

    cfg = ModelConfig.from_section(params.section("model"))
    seed = params.section("convert").int("seed")
    backbone_init = params.section("convert").choice("backbone_init", ("xavier", "kaiming"))
    neck_init = params.section("convert").choice("neck_init", ("xavier", "kaiming"))
    kind, src = (args.kind, args.src) if args.kind else source_from_params(params.section("convert"))
    if kind in WIDTH_SCALED_KINDS:
        require_published_width(cfg.width, f"{args.params}: model.width", src)

    t0 = time.perf_counter()
    state, loaded = convert(kind, src, cfg, seed, backbone_init, neck_init)
    pretrained = kind != SEEDED
    record = {"pretrained": pretrained, "kind": kind, "source": src, "seed": seed, "width": cfg.width}
    save_checkpoint(args.dst, {"model": state, **record})
    n_params = int(sum(v.size for v in state.values()))
    if args.metrics:
        write_json(args.metrics, {**record, "parameters": n_params, "tensors_loaded": loaded})
    what = f"{kind} weights from {src}" if pretrained else f"seeded initialisation (seed {seed})"
    print(f"convert_weights: {what}, {len(state)} tensors, {n_params} parameters, "
          f"width {cfg.width} -> {args.dst} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    run(main)
