"""Parity with the published PyTorch DSFD on ResNet-50 (``models/DSFD_resnet.py``): network,
priors, objective, BatchNorm statistics and one backward.

The numbers in tests/fixtures/parity_dsfd_resnet.npz were recorded once from the reference
code (tests/fixtures/make_parity_resnet.py says how; torch ran in a scratch environment
outside the project). The same weights are rebuilt here from their seed (the generator's
numpy-only :func:`parity_resnet_state`) and compared:

* the test forward (evaluation mode: BatchNorm on the running statistics) and the training
  forward (batch statistics), both shots' loc / conf: rtol = atol = 1e-4;
* both shots' priors: the reference network's own, 1e-6;
* the BatchNorm running statistics after the training forward (momentum, unbiased variance);
* every loss term and the positives / hard negatives of each shot;
* d total / d weight of one conv in each part (stem, each ResNet stage, extras, FPN, FEM, both
  shots' heads) and of two BatchNorm parameters: max |ours - reference| <= 1e-3 * max |reference|.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dainet.jt  # noqa: F401  (configures Jittor before it loads)
import jittor as jt

from dainet.boxes.priors import both_shots
from dainet.losses.multibox import MultiBoxLoss
from dainet.models import build_model
from dainet.params import load_params
from dainet.training.objective import detection_terms, total_loss
from dainet.weights import load_into
from helpers import paper_model
from parity import (assert_close, assert_gradient_close, assert_same_sets, assert_same_weights_drawn,
                    load_generator, match_sets, read_fixture)

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
VALUE_TOL = 1e-4
GRAD_TOL = 1e-3

pytestmark = pytest.mark.slow  # the published width: ~107 M parameters, a full forward + backward


GEN = load_generator("make_parity_resnet")


@pytest.fixture(scope="module")
def fixture():
    return read_fixture(GEN.FIXTURE)


def _sliced(name: str, grad: np.ndarray) -> np.ndarray:
    k = GEN.GRAD_PARAMS[name]
    return grad if k is None else grad[:k]


@pytest.fixture(scope="module")
def ours(fixture):
    """Everything our code computes on the fixture's inputs, as numpy."""
    params = load_params(PARAMS)
    train = params.section("train")
    cfg = paper_model(backbone="resnet50")
    net = build_model(cfg, reflectance=False)
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    drawn = GEN.parity_resnet_state(shapes)
    load_into(net, drawn, "parity weights (DSFD-ResNet50)")
    result = {"probe": {k: net.state_dict()[k].numpy().ravel()[:8] for k in shapes
                        if f"weights_probe/{k}" in fixture}}

    image = jt.array(GEN.GEN.to_float(fixture["image_u8"]))
    targets = jt.array(fixture["targets"])
    hw = tuple(fixture["image_u8"].shape[2:])

    net.eval()
    with jt.no_grad():
        loc2, conf2, _ = net(image)
    result["eval"] = {"loc2": loc2.numpy(), "conf2": conf2.numpy()}

    net.train()
    shots = both_shots(params.section("priors"), cfg)
    priors = {shot: jt.array(spec.priors(hw)) for shot, spec in zip((1, 2), shots)}
    result["priors"] = {f"pal{shot}": p.numpy() for shot, p in priors.items()}
    multibox = MultiBoxLoss(train.value("match_iou", float), train.value("neg_pos_ratio", int), shots[1].variances,
                            train.value("smooth_l1_beta", float))
    out = net.forward_train(image)
    terms = detection_terms(out, targets, priors[1], priors[2], multibox)
    total = total_loss(terms)
    named = dict(net.named_parameters())
    grads = jt.grad(total, [named[k] for k in GEN.GRAD_PARAMS])
    result["loss"] = {k: float(v.item()) for k, v in terms.items()}
    result["loss"]["total"] = float(total.item())
    result["grad"] = {k: _sliced(k, g.numpy()) for k, g in zip(GEN.GRAD_PARAMS, grads)}
    result["out"] = {k: out[k].numpy() for k in ("loc1", "conf1", "loc2", "conf2")}
    state = net.state_dict()
    result["bn"] = {f"{m}.{s}": state[f"{m}.{s}"].numpy() for m in GEN.BN_RECORDED
                    for s in ("running_mean", "running_var")}
    result["match"] = match_sets(targets, priors, out, multibox)
    return result


def test_same_weights_drawn(fixture, ours):
    assert_same_weights_drawn(fixture, ours["probe"])


@pytest.mark.parametrize("name", ["loc2", "conf2"])
def test_test_forward_on_the_running_statistics(fixture, ours, name):
    assert_close(ours["eval"][name], fixture[f"eval/{name}"], f"eval {name}", VALUE_TOL)


@pytest.mark.parametrize("name", ["loc1", "conf1", "loc2", "conf2"])
def test_training_forward(fixture, ours, name):
    assert_close(ours["out"][name], fixture[f"out/{name}"], name, VALUE_TOL)


@pytest.mark.parametrize("shot", ["pal1", "pal2"])
def test_priors_are_the_reference_networks(fixture, ours, shot):
    assert_close(ours["priors"][shot], fixture[f"priors/{shot}"], f"priors {shot}", 1e-6)


@pytest.mark.parametrize("name", [f"{m}.{s}" for m in GEN.BN_RECORDED for s in ("running_mean", "running_var")])
def test_batchnorm_running_statistics_after_one_training_forward(fixture, ours, name):
    assert_close(ours["bn"][name], fixture[f"bn/{name}"], name, VALUE_TOL)


@pytest.mark.parametrize("term", GEN.LOSS_TERMS)
def test_loss_terms(fixture, ours, term):
    ref64 = float(fixture[f"loss64/{term}"])
    assert_close(ours["loss"][term], fixture[f"loss/{term}"], f"loss term {term}", VALUE_TOL,
                 f"; the reference's float64 value is {ref64:.9g}")


@pytest.mark.parametrize("key", GEN.SETS)
def test_positives_and_hard_negatives(fixture, ours, key):
    assert_same_sets(ours["match"][key], fixture[f"match/{key}"], key)


@pytest.mark.parametrize("name", list(GEN.GRAD_PARAMS))
def test_gradients(fixture, ours, name):
    # zero_ok: no positive prior on a level (loc_pal2.5: the 512-px prior on a 96x128 image)
    assert_gradient_close(ours["grad"][name], fixture[f"grad/{name}"], name, GRAD_TOL, zero_ok=True)
