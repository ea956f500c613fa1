"""Parity with the published PyTorch DAI-Net: network, objective and one backward.

The numbers in tests/fixtures/parity_dainet.npz were recorded once from the reference code
(github.com/ZPDu/DAI-Net, run in a scratch environment with torch, outside the project;
tests/fixtures/make_parity_fixtures.py says how). Here the same weights are rebuilt from
their seed (the generator's :func:`parity_tensor`, numpy only), our Jittor network, frozen
decomposer and objective run on the stored inputs, and everything is compared:

* the decomposer's R / I and the reflectance maps (subsampled), the detection outputs of
  both shots and the pooled shallow features: rtol = atol = 1e-4;
* every loss term (loc1, conf1, loc2, conf2, ref, enh, mutual, total): rtol = atol = 1e-4;
* the positives and hard negatives of each shot: the same index sets;
* d total / d weight of one conv in each part (backbone, extras, FPN, FEM, both heads,
  reflectance decoder): max |ours - reference| <= 1e-3 * max |reference|.

No torch at run time: the fixture is plain numpy.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import dainet.jt  # noqa: F401  (configures Jittor before it loads)
import jittor as jt

from dainet.boxes.priors import both_shots
from dainet.losses.multibox import MultiBoxLoss
from dainet.models import build_decomposer, build_model
from dainet.params import load_params
from dainet.training.objective import LossWeights, dainet_terms, detection_terms, total_loss
from dainet.weights import load_into
from helpers import paper_model
from parity import (assert_close, assert_gradient_close, assert_same_sets, assert_same_weights_drawn,
                    load_generator, match_sets, read_fixture)

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
VALUE_TOL = 1e-4
GRAD_TOL = 1e-3

pytestmark = pytest.mark.slow  # the published width: ~50 M parameters, a full forward + backward


GEN = load_generator("make_parity_fixtures")


@pytest.fixture(scope="module")
def fixture():
    return read_fixture(GEN.FIXTURE)


@pytest.fixture(scope="module")
def ours(fixture):
    """Everything our code computes on the fixture's inputs, as numpy."""
    params = load_params(PARAMS)
    train, priors_s = params.section("train"), params.section("priors")
    weights = train.load(LossWeights)
    # the fixture was recorded with torchmetrics 1.2.1, which crops the SSIM border
    assert getattr(weights, "ssim_crop_border", True) is True, "params train.ssim_crop_border must be true"

    cfg = paper_model()
    net = build_model(cfg, reflectance=True)
    decomposer = build_decomposer(cfg)
    for module, name in ((net, "DAI-Net"), (decomposer, "DecomNet")):
        shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        load_into(module, GEN.parity_state(shapes), f"parity weights ({name})")
    net.train()
    decomposer.eval()
    probes = {k: v for k, v in {**net.state_dict(), **decomposer.state_dict()}.items()
              if f"weights_probe/{k}" in fixture}

    light = jt.array(GEN.to_float(fixture["light_u8"]))
    dark = jt.array(GEN.to_float(fixture["dark_u8"]))
    targets = jt.array(fixture["targets"])
    n = dark.shape[0]
    with jt.no_grad():
        R, I = decomposer(jt.concat([dark, light], dim=0))
    R, I = R.stop_grad(), I.stop_grad()
    R_dark_gt, I_dark, R_light_gt, I_light = R[:n], I[:n], R[n:], I[n:]

    hw = tuple(fixture["light_u8"].shape[2:])
    shots = both_shots(priors_s, cfg)
    variances = shots[1].variances
    priors = {shot: jt.array(spec.priors(hw)) for shot, spec in zip((1, 2), shots)}
    multibox = MultiBoxLoss(train.value("match_iou", float), train.value("neg_pos_ratio", int), variances,
                            train.value("smooth_l1_beta", float))

    out = net.forward_train(dark, light, I_dark, I_light)
    terms = detection_terms(out, targets, priors[1], priors[2], multibox)
    terms.update(dainet_terms(out, dark, light, R_dark_gt, R_light_gt, I_dark, I_light, weights))
    total = total_loss(terms)
    named = dict(net.named_parameters())
    grads = jt.grad(total, [named[k] for k in GEN.GRAD_PARAMS])

    result = {"loss": {k: float(v.item()) for k, v in terms.items()}, "grad": {}, "maps": {}, "out": {},
              "match": {}, "probe": {k: v.numpy().ravel()[:8] for k, v in probes.items()}}
    result["loss"]["total"] = float(total.item())
    for k, g in zip(GEN.GRAD_PARAMS, grads):
        result["grad"][k] = GEN.grad_slice(k, g.numpy())
    maps = dict(R_dark_gt=R_dark_gt, I_dark=I_dark, R_light_gt=R_light_gt, I_light=I_light,
                R_dark=out["R_dark"], R_light=out["R_light"], R_dark_2=out["R_dark_2"], R_light_2=out["R_light_2"])
    s = GEN.SUBSAMPLE
    result["maps"] = {k: v.numpy()[:, :, ::s, ::s] for k, v in maps.items()}
    result["out"] = {k: out[k].numpy() for k in ("loc1", "conf1", "loc2", "conf2",
                                                 "g_dark", "g_light", "g_dark2", "g_light2")}
    result["match"] = match_sets(targets, priors, out, multibox)
    return result


def test_same_weights_drawn(fixture, ours):
    assert_same_weights_drawn(fixture, ours["probe"])


@pytest.mark.parametrize("name", ["R_dark_gt", "I_dark", "R_light_gt", "I_light"])
def test_decomposer_maps(fixture, ours, name):
    assert_close(ours["maps"][name], fixture[f"sub/{name}"], name, VALUE_TOL)


@pytest.mark.parametrize("name", ["R_dark", "R_light", "R_dark_2", "R_light_2"])
def test_reflectance_maps(fixture, ours, name):
    assert_close(ours["maps"][name], fixture[f"sub/{name}"], name, VALUE_TOL)


@pytest.mark.parametrize("name", ["loc1", "conf1", "loc2", "conf2", "g_dark", "g_light", "g_dark2", "g_light2"])
def test_network_outputs(fixture, ours, name):
    assert_close(ours["out"][name], fixture[f"out/{name}"], name, VALUE_TOL)


@pytest.mark.parametrize("term", GEN.LOSS_TERMS)
def test_loss_terms(fixture, ours, term):
    ref64 = float(fixture[f"loss64/{term}"])
    assert_close(ours["loss"][term], fixture[f"loss/{term}"], f"loss term {term}", VALUE_TOL,
                 f"; the reference's float64 value is {ref64:.9g}")


@pytest.mark.parametrize("key", ["pos1", "neg1", "pos2", "neg2"])
def test_positives_and_hard_negatives(fixture, ours, key):
    assert_same_sets(ours["match"][key], fixture[f"match/{key}"], key)


@pytest.mark.parametrize("name", list(GEN.GRAD_PARAMS))
def test_gradients(fixture, ours, name):
    assert_gradient_close(ours["grad"][name], fixture[f"grad/{name}"], name, GRAD_TOL)
