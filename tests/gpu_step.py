"""The paper profile's training step on CUDA and on the CPU, same weights, inputs and noise,
for tests/test_gpu.py (run as a child: ``NVIDIA_TF32_OVERRIDE=0`` must be set before the
CUDA libraries load, or cuDNN and cuBLAS compute float32 convolutions in TF32).

    python tests/gpu_step.py OUT.json [--size 128] [--batch 2] [--steps 2]

Writes, per method: each device's loss terms of every step, and per parameter the norms of
the first step's CPU gradient and of the CUDA - CPU difference.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dainet.jt  # noqa: F401  (configures Jittor before it loads)
import jittor as jt  # noqa: E402
import numpy as np  # noqa: E402

import dainet.data.darkisp as darkisp  # noqa: E402
from dainet.params import load_params, write_overrides  # noqa: E402
from dainet.runtime import use_device  # noqa: E402
from dainet.training.objective import total_loss  # noqa: E402
from dainet.training.optim import clip_grad_norm  # noqa: E402
from dainet.training.stage import seeded_step  # noqa: E402


def device_free_noise(shape, seed):
    """DarkISP's per-pixel noise from numpy: Jittor's own generators differ between devices."""
    rng = np.random.default_rng(seed)
    return (jt.array(rng.standard_normal(shape, dtype=np.float32)).stop_grad(),
            jt.array(rng.random(shape, dtype=np.float32)).stop_grad())


def run(params, method: str, device: str, steps: int, light, targets) -> dict:
    jt.flags.use_cuda = int(device == "cuda")
    net, opt, step = seeded_step(params, method=method)
    names = {id(p): n for n, p in net.named_parameters()}
    clip = params.section("train").value("clip_grad_norm", float)
    losses, grads = [], {}
    for i in range(steps):
        terms, _ = step(jt.array(light), jt.array(targets), np.random.default_rng([0, i]))
        opt.backward(total_loss(terms))
        if i == 0:
            grads = {names[id(p)]: g.numpy()
                     for pg in opt.param_groups for p, g in zip(pg["params"], pg["grads"])}
        clip_grad_norm(opt, clip)
        opt.step()
        losses.append({k: float(v.item()) for k, v in terms.items()})
    jt.sync_all(True)
    return {"losses": losses, "grads": grads}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args()
    use_device("cuda")   # a UserError naming what is missing when CUDA is not usable
    darkisp.seeded_noise = device_free_noise
    with tempfile.TemporaryDirectory() as tmp:
        params = load_params(write_overrides(Path(tmp) / "paper.yaml",
                                             {"augment.image_size": args.size, "train.batch_size": args.batch},
                                             base=ROOT / "params" / "wider.yaml"))
        rng = np.random.default_rng(0)
        light = rng.random((args.batch, 3, args.size, args.size), dtype=np.float32)
        targets = np.array([[[0.1, 0.1, 0.3, 0.3, 1], [0.5, 0.5, 0.9, 0.8, 1]]] * args.batch, np.float32)
        out = {}
        for method in ("dainet", "dsfd"):
            cuda, cpu = (run(params, method, d, args.steps, light, targets) for d in ("cuda", "cpu"))
            out[method] = {"losses": {"cuda": cuda["losses"], "cpu": cpu["losses"]},
                           "grads": {k: {"cpu_norm": float(np.linalg.norm(g)),
                                         "diff_norm": float(np.linalg.norm(cuda["grads"][k] - g))}
                                     for k, g in cpu["grads"].items()}}
    Path(args.out).write_text(json.dumps(out))


if __name__ == "__main__":
    main()
