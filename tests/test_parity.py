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

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import dainet.jt  # noqa: F401  (configures Jittor before it loads)
import jittor as jt

from dainet.boxes.matcher import match
from dainet.boxes.priors import both_shots
from dainet.losses.multibox import MultiBoxLoss, cross_entropy_per_prior, hard_negative_mask
from dainet.models import build_decomposer, build_model
from dainet.params import load_params
from dainet.training.objective import LossWeights, dainet_terms, detection_terms, total_loss
from dainet.weights import load_into
from helpers import paper_model

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
VALUE_TOL = 1e-4
GRAD_TOL = 1e-3

pytestmark = pytest.mark.slow  # the published width: ~50 M parameters, a full forward + backward


def _generator():
    spec = importlib.util.spec_from_file_location("make_parity_fixtures", FIXTURES / "make_parity_fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # numpy only at import time
    return mod


GEN = _generator()


@pytest.fixture(scope="module")
def fixture():
    with np.load(GEN.FIXTURE) as z:
        data = {k: z[k] for k in z.files}
    data["meta"] = json.loads(str(data["meta"]))
    return data


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
    for shot in (1, 2):
        _, conf_t = match(targets, priors[shot], multibox.match_iou, multibox.variances)
        pos = conf_t > 0
        ce = cross_entropy_per_prior(out[f"conf{shot}"], conf_t)
        neg = hard_negative_mask(ce, pos, multibox.neg_pos_ratio).numpy() & ~pos.numpy()
        result["match"][f"pos{shot}"] = np.flatnonzero(pos.numpy().ravel())
        result["match"][f"neg{shot}"] = np.flatnonzero(neg.ravel())
    return result


def _close(ours_v, ref_v, what, extra=""):
    ours_v, ref_v = np.asarray(ours_v, np.float64), np.asarray(ref_v, np.float64)
    err = np.abs(ours_v - ref_v)
    bad = err > VALUE_TOL + VALUE_TOL * np.abs(ref_v)
    assert not bad.any(), (f"{what}: {int(bad.sum())} of {bad.size} values differ beyond rtol=atol={VALUE_TOL}; "
                           f"max abs diff {err.max():.3g} at {np.unravel_index(err.argmax(), err.shape)} "
                           f"(ours {ours_v.ravel()[err.argmax()]:.7g}, reference {ref_v.ravel()[err.argmax()]:.7g})"
                           f"{extra}")


def test_same_weights_drawn(fixture, ours):
    for k in (k[len("weights_probe/"):] for k in fixture if k.startswith("weights_probe/")):
        np.testing.assert_array_equal(ours["probe"][k], fixture[f"weights_probe/{k}"], err_msg=k)


@pytest.mark.parametrize("name", ["R_dark_gt", "I_dark", "R_light_gt", "I_light"])
def test_decomposer_maps(fixture, ours, name):
    _close(ours["maps"][name], fixture[f"sub/{name}"], name)


@pytest.mark.parametrize("name", ["R_dark", "R_light", "R_dark_2", "R_light_2"])
def test_reflectance_maps(fixture, ours, name):
    _close(ours["maps"][name], fixture[f"sub/{name}"], name)


@pytest.mark.parametrize("name", ["loc1", "conf1", "loc2", "conf2", "g_dark", "g_light", "g_dark2", "g_light2"])
def test_network_outputs(fixture, ours, name):
    _close(ours["out"][name], fixture[f"out/{name}"], name)


@pytest.mark.parametrize("term", GEN.LOSS_TERMS)
def test_loss_terms(fixture, ours, term):
    ref64 = float(fixture[f"loss64/{term}"])
    _close(ours["loss"][term], fixture[f"loss/{term}"], f"loss term {term}",
           f"; the reference's float64 value is {ref64:.9g}")


@pytest.mark.parametrize("key", ["pos1", "neg1", "pos2", "neg2"])
def test_positives_and_hard_negatives(fixture, ours, key):
    got, want = set(ours["match"][key].tolist()), set(fixture[f"match/{key}"].tolist())
    assert got == want, (f"{key}: {len(got)} ours vs {len(want)} reference; only ours {sorted(got - want)[:10]}, "
                         f"only reference {sorted(want - got)[:10]}")


@pytest.mark.parametrize("name", list(GEN.GRAD_PARAMS))
def test_gradients(fixture, ours, name):
    g, ref = ours["grad"][name].astype(np.float64), fixture[f"grad/{name}"].astype(np.float64)
    assert g.shape == ref.shape
    scale = np.abs(ref).max()
    assert scale > 0, f"{name}: the reference gradient is zero; the check would be empty"
    err = np.abs(g - ref)
    assert err.max() <= GRAD_TOL * scale, (
        f"d total / d {name}: max |ours - reference| = {err.max():.3g} = {err.max() / scale:.2e} of the "
        f"gradient's scale {scale:.3g} (tolerance {GRAD_TOL:g}); relative L2 "
        f"{np.linalg.norm(g - ref) / np.linalg.norm(ref):.2e}, ours/reference norm "
        f"{np.linalg.norm(g) / np.linalg.norm(ref):.4f}")
