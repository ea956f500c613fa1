"""Training speed of DAI-Net against the two DSFD baselines, in one run, as images/s and ratios.

The step is the `train` stage's own (:class:`dainet.training.step.StepLosses`) with the
profile's network, crop size and batch (``params.yaml`` by default), on random images:

* ``dainet``: DarkISP, the frozen decomposition net on both images, the joint objective;
* ``dainet-shared``: the same with ``train.bn_streams: shared`` (one batched stem pass);
* ``dsfd-dark``: DSFD on DarkISP images (no reflectance decoder, no decomposition);
* ``dsfd-clean``: DSFD on the clean images;
* ``dsfd-resnet50``: DSFD on DarkISP images with ``model.backbone: resnet50`` (the profile's
  width and norm).

The three are timed in turns (round-robin, ``--rounds`` rounds of ``--steps`` steps after a
warm-up), so machine noise hits them alike; the ratios are the figure to quote.

    python bench/methods.py [--params params.yaml] [--steps 5] [--rounds 3]
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import dainet.jt  # noqa: F401  (configures Jittor before it loads)
import jittor as jt
import numpy as np

from dainet.boxes.priors import both_shots
from dainet.data.darkisp import DarkISPConfig
from dainet.models import build_model
from dainet.models.decomp import build_decomposer
from dainet.models.config import ModelConfig
from dainet.models.init import init_weights
from dainet.params import Section, load_params
from dainet.training.config import TrainConfig
from dainet.training.step import StepLosses
from dainet.training.objective import LossWeights, total_loss
from dainet.training.optim import clip_grad_norm, make_optimizer

# name -> the params `train` keys it overrides, and the `model` keys
METHODS = {"dainet": ({"method": "dainet"}, {}),
           "dainet-shared": ({"method": "dainet", "bn_streams": "shared"}, {}),  # the stem's BN statistics batched
           "dsfd-dark": ({"method": "dsfd", "dsfd_input": "dark"}, {}),
           "dsfd-clean": ({"method": "dsfd", "dsfd_input": "clean"}, {}),
           "dsfd-resnet50": ({"method": "dsfd", "dsfd_input": "dark"}, {"backbone": "resnet50"})}


def make_step(params: Section, overrides: dict, model_overrides: dict):
    """``(step(i), batch, parameters)``: ``step`` runs one optimiser step with the params `train`
    ``overrides`` and `model` ``model_overrides`` (one of :data:`METHODS`) on fixed random inputs."""
    train = dict(params.section("train").to_dict(), **overrides)
    sec = Section(train, "train", params.source)
    cfg = sec.load(TrainConfig, image_size=params.section("augment").value("image_size", int),
                   losses=sec.load(LossWeights))
    model = dataclasses.replace(params.section("model").load(ModelConfig), **model_overrides)
    net = init_weights(build_model(model, reflectance=cfg.reflectance), 0, "kaiming", "kaiming")
    decomposer = None
    if cfg.reflectance:
        decomposer = init_weights(build_decomposer(params.section("model")), 0)
        decomposer.eval()
        for p in decomposer.parameters():
            p.stop_grad()
    opt = make_optimizer(net, cfg.optimizer, cfg.lr, cfg.ref_lr_mult, cfg.momentum, cfg.weight_decay,
                         cfg.train_l2norm)
    step = StepLosses(net, decomposer, cfg, params.section("darkisp").load(DarkISPConfig),
                      both_shots(params.section("priors"), model))
    rng = np.random.default_rng(0)
    n, s = cfg.batch_size, cfg.image_size
    light = rng.random((n, 3, s, s), dtype=np.float32)
    targets = np.array([[[0.1, 0.1, 0.3, 0.3, 1], [0.5, 0.5, 0.9, 0.8, 1]]] * n, np.float32)

    def run(i: int) -> None:
        terms, _ = step(jt.array(light), jt.array(targets), np.random.default_rng(i))
        opt.backward(total_loss(terms))
        clip_grad_norm(opt, cfg.clip_grad_norm)
        opt.step()
        jt.sync_all(True)

    parameters = sum(int(np.prod(p.shape)) for p in net.parameters() if not p.is_stop_grad())
    return run, n, parameters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per method per round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    params = load_params(args.params)
    steps = {name: make_step(params, *m) for name, m in METHODS.items()}
    for run, _, _ in steps.values():  # warm-up: Jittor compiles each graph's kernels once
        run(0), run(1)
    seconds = {name: 0.0 for name in steps}
    for r in range(args.rounds):
        for name, (run, _, _) in steps.items():
            t0 = time.perf_counter()
            for i in range(args.steps):
                run(2 + r * args.steps + i)
            seconds[name] += time.perf_counter() - t0
    images = {name: n * args.steps * args.rounds for name, (_, n, _) in steps.items()}
    rate = {name: images[name] / seconds[name] for name in steps}
    print(f"training step, {args.params}: {args.rounds} rounds x {args.steps} steps per method, CPU")
    for name in steps:
        print(f"  {name:13s} {rate[name]:6.2f} images/s   {rate[name] / rate['dainet']:.2f}x DAI-Net   "
              f"{steps[name][2] / 1e6:.2f} M parameters")


if __name__ == "__main__":
    main()
