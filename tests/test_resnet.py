"""DSFD on a ResNet backbone (``model.backbone: resnet50 | resnet101 | resnet152``).

The network against the published ``DSFD_resnet.py`` lives in tests/test_parity_resnet.py;
here: the building blocks against numpy transcriptions of PyTorch's semantics, the names and
shapes of all three depths against the reference's own state dicts (recorded in the parity
fixture), the priors against the heads, the params rules, and the converters on real-format
``.pth`` files.
"""
from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import yaml

import dainet.jt  # noqa: F401  (configures Jittor before it loads)
import jittor as jt

from dainet.boxes.priors import PriorSpec
from dainet.models import build_model, init_weights
from dainet.models.resnet import BatchNorm2d, MaxPool3x3s2
from dainet.params import ParamError, load_params
from dainet.weights import load_checkpoint
from helpers import paper_model
from dainet.cli import run
from stages.convert_weights import main as convert_main
from torch_writer import save_zip

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ROOT = Path(__file__).resolve().parents[1]
DEPTHS = ("resnet50", "resnet101", "resnet152")


def stage_exit(argv, capsys) -> tuple[int, str]:
    """Run the convert_weights stage as DVC does (``dainet.cli.run``): exit status and stderr."""
    with pytest.raises(SystemExit) as exc:
        run(convert_main, argv)
    return exc.value.code, capsys.readouterr().err
MARKER = "dainet_pwned_marker"   # what the evil fixtures' payload would create


# -- building blocks -----------------------------------------------------------------------
def numpy_max_pool_3x3s2(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch ``MaxPool2d(3, 2, padding=1)`` on [N, C, H, W] and the gradient of ``sum(out * g)``
    for g = 1 + the output's flat index: each window's gradient to its first maximum (row-major)."""
    n, c, h, w = x.shape
    oh, ow = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    out = np.empty((n, c, oh, ow), x.dtype)
    grad = np.zeros_like(x)
    g = 1.0 + np.arange(n * c * oh * ow, dtype=x.dtype).reshape(n, c, oh, ow)
    for i in range(oh):
        for j in range(ow):
            r0, c0 = max(2 * i - 1, 0), max(2 * j - 1, 0)
            win = x[:, :, r0:2 * i + 2, c0:2 * j + 2].reshape(n, c, -1)
            k = win.argmax(axis=2)                    # the first maximum
            out[:, :, i, j] = np.take_along_axis(win, k[..., None], 2)[..., 0]
            ww = min(2 * j + 2, w) - c0
            for a in range(n):
                for b in range(c):
                    grad[a, b, r0 + k[a, b] // ww, c0 + k[a, b] % ww] += g[a, b, i, j]
    return out, grad


@pytest.mark.parametrize("hw", [(1, 1), (2, 3), (3, 3), (4, 5), (7, 6), (9, 12)])
def test_max_pool_is_pytorchs_for_any_size_with_ties(hw):
    rng = np.random.default_rng(sum(hw))
    x = np.round(rng.random((2, 3) + hw) * 3).astype(np.float32)   # values 0..3: many ties
    want, want_grad = numpy_max_pool_3x3s2(x)
    xv = jt.array(x)
    out = MaxPool3x3s2()(xv)
    assert tuple(out.shape) == want.shape
    np.testing.assert_array_equal(out.numpy(), want)
    g = 1.0 + np.arange(want.size, dtype=np.float32).reshape(want.shape)
    np.testing.assert_array_equal(jt.grad((out * jt.array(g)).sum(), xv).numpy(), want_grad)


def test_batchnorm_is_pytorchs_in_training_and_evaluation():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, 4, 5, 6)) * 3 + 7).astype(np.float32)   # a large mean: E[x^2]-E[x]^2 loses digits
    bn = BatchNorm2d(4)
    bn.weight.assign(jt.array(np.float32([1.0, 2.0, 0.5, -1.0])))
    bn.bias.assign(jt.array(np.float32([0.0, 0.1, -0.2, 0.3])))
    x64 = x.astype(np.float64)
    mean, var = x64.mean((0, 2, 3)), x64.var((0, 2, 3))
    count = x.size // 4
    w, b = np.float64([1.0, 2.0, 0.5, -1.0]), np.float64([0.0, 0.1, -0.2, 0.3])
    shape = (1, -1, 1, 1)
    want = (x64 - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + 1e-5) * w.reshape(shape) + b.reshape(shape)
    bn.train()
    np.testing.assert_allclose(bn(jt.array(x)).numpy(), want, rtol=1e-5, atol=2e-5)
    # PyTorch: running_var moves towards the UNBIASED variance, momentum 0.1
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.9 + 0.1 * var * count / (count - 1), rtol=1e-5)
    bn.eval()
    rm, rv = 0.1 * mean, 0.9 + 0.1 * var * count / (count - 1)
    want_eval = (x64 - rm.reshape(shape)) / np.sqrt(rv.reshape(shape) + 1e-5) * w.reshape(shape) + b.reshape(shape)
    np.testing.assert_allclose(bn(jt.array(x)).numpy(), want_eval, rtol=1e-5, atol=2e-5)


# -- the network -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference_keys():
    with np.load(FIXTURES / "parity_dsfd_resnet.npz") as z:
        return {d: [(k, tuple(s)) for k, s in json.loads(str(z[f"keys/{d}"]))] for d in DEPTHS}


@pytest.mark.parametrize("depth", DEPTHS)
def test_names_and_shapes_are_the_published_networks(reference_keys, depth):
    """Every tensor of the reference's DSFD-ResNet state dict, in its order, with its shape
    (PyTorch's BatchNorm step counters aside), at the published width."""
    ours = [(k, tuple(v.shape)) for k, v in build_model(paper_model(backbone=depth), reflectance=False)
            .state_dict().items()]
    want = [(k, s) for k, s in reference_keys[depth] if not k.endswith(".num_batches_tracked")]
    assert ours == want


def test_the_priors_fit_the_heads_at_any_input_size():
    """The ResNet's level sizes (every halving ``floor((n-1)/2)+1``) give exactly as many
    priors as the heads have cells, odd sizes and a 1-px input included."""
    cfg = paper_model(backbone="resnet50", width=1 / 16)
    net = init_weights(build_model(cfg, reflectance=False), 0)
    net.eval()
    spec = PriorSpec.for_shot(load_params(ROOT / "params.yaml").section("priors"), cfg, 2)
    for hw in ((1, 1), (33, 35), (97, 131), (128, 96)):
        with jt.no_grad():
            loc, conf, R = net(jt.zeros((1, 3) + hw))
        assert R is None
        assert loc.shape[1] == conf.shape[1] == len(spec.priors(hw)), hw


def test_width_and_norm_shape_a_sample_sized_resnet():
    cfg = paper_model(backbone="resnet50", width=0.25, norm="batch", norm_scope="all")
    net = build_model(cfg, reflectance=False)
    sd = net.state_dict()
    assert tuple(sd["resnet.conv1.weight"].shape) == (16, 3, 7, 7)
    assert tuple(sd["resnet.layer4.2.conv3.weight"].shape) == (512, 128, 1, 1)
    assert cfg.source_channels == [64, 128, 256, 512, 128, 64]
    assert "extras.0.norm.running_mean" in sd and "fpn_fem.3.branch1.norm.weight" in sd
    assert not any(k.startswith(("L2Norm", "vgg.", "ref.")) for k in sd)


def test_zero_init_residual_starts_every_bottleneck_as_its_shortcut():
    cfg = paper_model(backbone="resnet50", width=0.25, norm="batch")
    plain = init_weights(build_model(cfg, reflectance=False), 0, "kaiming", "kaiming")
    zero = init_weights(build_model(cfg, reflectance=False), 0, "kaiming", "kaiming", zero_residual=True)
    a, b = plain.state_dict(), zero.state_dict()
    changed = sorted(k for k in a if not np.array_equal(a[k].numpy(), b[k].numpy()))
    assert changed == sorted(f"resnet.layer{s}.{i}.bn3.weight" for s, n in zip((1, 2, 3, 4), (3, 4, 6, 3))
                             for i in range(n))
    # a block without a downsample now returns relu(its input): the input is already post-ReLU
    block = zero.resnet.layer1[1]
    x = jt.array(np.random.default_rng(0).uniform(0, 2, (2, 64, 8, 8)).astype("float32"))
    np.testing.assert_array_equal(block(x).numpy(), x.numpy())
    vgg = paper_model(width=0.25, norm="batch")
    v0 = init_weights(build_model(vgg, reflectance=False), 0, "kaiming", "kaiming").state_dict()
    v1 = init_weights(build_model(vgg, reflectance=False), 0, "kaiming", "kaiming", zero_residual=True).state_dict()
    assert all(np.array_equal(v0[k].numpy(), v1[k].numpy()) for k in v0)


# -- params ------------------------------------------------------------------------------------
def _params(tmp_path, **changes) -> Path:
    tree = yaml.safe_load((ROOT / "params.yaml").read_text())
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        tree[section][key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


@pytest.mark.parametrize("changes, message", [
    ({"model__backbone": "resnet50"},
     "model.backbone: DAI-Net is defined on the VGG backbone only"),
    ({"model__backbone": "resnet101", "train__method": "dsfd", "convert__vgg_src": "v.pth"},
     "convert.vgg_src: a VGG backbone file for model.backbone resnet101"),
    ({"convert__resnet_src": "r.pth"}, "convert.resnet_src: a ResNet backbone file for model.backbone vgg"),
    ({"model__backbone": "resnet18", "train__method": "dsfd"}, "model.backbone"),
])
def test_combinations_the_published_code_does_not_have_are_refused(tmp_path, changes, message):
    with pytest.raises(ParamError, match=message.replace(".", r"\.")):
        load_params(_params(tmp_path, **changes))


def test_a_resnet_accepts_crops_a_vgg_cannot_use(tmp_path):
    load_params(_params(tmp_path, model__backbone="resnet50", train__method="dsfd", augment__image_size=16))
    with pytest.raises(ParamError, match=r"augment\.image_size: expected an integer >= 28"):
        load_params(_params(tmp_path, augment__image_size=16))


# -- converters on real-format files ------------------------------------------------------
def torchvision_state(depth: str, seed: int = 0) -> OrderedDict:
    """A state dict with torchvision's ``resnet<depth>`` names and shapes (``fc`` and the
    BatchNorm step counters included), values seeded: what ``torch.save(resnet.state_dict())`` holds."""
    net = build_model(paper_model(backbone=depth), reflectance=False).resnet
    rng = np.random.default_rng(seed)
    sd = OrderedDict()
    for k, v in net.state_dict().items():
        sd[k] = rng.standard_normal(tuple(v.shape)).astype(np.float32)
        if k.endswith("running_var"):
            sd[k] = np.abs(sd[k]) + 0.5
            sd[k[: -len("running_var")] + "num_batches_tracked"] = np.array(1234, np.int64)
    sd["fc.weight"] = rng.standard_normal((1000, 2048)).astype(np.float32)
    sd["fc.bias"] = rng.standard_normal(1000).astype(np.float32)
    sd._metadata = OrderedDict({"": {"version": 1}})
    return sd


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("tv")
    sd = torchvision_state("resnet50")
    path = root / "resnet50-0676ba61.pth"
    save_zip(sd, path)
    params = _params(root, model__backbone="resnet50", model__width=1.0, model__norm="none",
                     train__method="dsfd", convert__resnet_src=str(path))
    return path, sd, params


def test_torchvision_resnet_file_fills_the_backbone(resnet50_file, tmp_path):
    path, sd, params = resnet50_file
    dst, metrics = tmp_path / "init.ckpt", tmp_path / "convert.json"
    assert convert_main(["--dst", str(dst), "--metrics", str(metrics), "--params", str(params)]) == 0
    ckpt = load_checkpoint(dst)
    assert (ckpt["kind"], ckpt["source"], ckpt["pretrained"]) == ("resnet", str(path), True)
    model = ckpt["model"]
    backbone = [k for k in model if k.startswith("resnet.")]
    assert len(backbone) == len([k for k in sd if not k.endswith("num_batches_tracked")]) - 2   # no fc
    for k in backbone:
        np.testing.assert_array_equal(model[k], sd[k[len("resnet."):]], err_msg=k)
    # the rest is the seeded initialisation: no reflectance decoder, no L2Norm
    assert not any(k.startswith(("ref.", "L2Norm", "vgg.")) for k in model)
    assert np.abs(model["fpn_fem.0.branch1.weight"]).max() > 0
    assert json.loads(metrics.read_text())["tensors_loaded"] == len(sd)


def test_a_misfit_resnet_file_is_refused_with_every_misfit_in_one_message(resnet50_file, tmp_path, capsys):
    path, sd, params = resnet50_file
    bad = OrderedDict(sd)
    del bad["layer3.5.conv2.weight"]
    bad["layer5.0.conv1.weight"] = np.zeros((1, 1, 1, 1), np.float32)
    bad["layer1.0.bn1.weight"] = np.zeros(65, np.float32)
    bad_path = tmp_path / "bad.pth"
    save_zip(bad, bad_path)
    code, err = stage_exit(["--kind", "resnet", "--src", str(bad_path), "--dst", str(tmp_path / "x.ckpt"),
                            "--params", str(params)], capsys)
    err = err.strip().splitlines()
    assert code == 2 and len(err) == 1
    for part in ("bad.pth does not fit the model", "1 missing (resnet.layer3.5.conv2.weight)",
                 "1 unexpected (resnet.layer5.0.conv1.weight)",
                 "1 mis-shaped (resnet.layer1.0.bn1.weight: file (65,), model (64,))"):
        assert part in err[0]
    assert not (tmp_path / "x.ckpt").exists()


def test_a_whole_published_dsfd_resnet_checkpoint_loads(resnet50_file, tmp_path):
    """As the reference saves it: DataParallel's ``module.`` prefix, BatchNorm step counters,
    wrapped as ``{'epoch': e, 'weight': state_dict}``."""
    _, _, params = resnet50_file
    net = build_model(paper_model(backbone="resnet50"), reflectance=False)
    rng = np.random.default_rng(1)
    sd = OrderedDict()
    for k, v in net.state_dict().items():
        sd["module." + k] = rng.standard_normal(tuple(v.shape)).astype(np.float32)
        if k.endswith("running_var"):
            sd["module." + k[: -len("running_var")] + "num_batches_tracked"] = np.array(7, np.int64)
    src = tmp_path / "dsfd_resnet50.pth"
    save_zip({"epoch": 3, "weight": sd}, src)
    dst = tmp_path / "whole.ckpt"
    assert convert_main(["--kind", "dainet", "--src", str(src), "--dst", str(dst), "--params", str(params)]) == 0
    model = load_checkpoint(dst)["model"]
    assert list(model) == list(net.state_dict())
    np.testing.assert_array_equal(model["conf_pal2.5.weight"], sd["module.conf_pal2.5.weight"])


@pytest.mark.parametrize("evil", ["evil_zip_system.pt", "evil_legacy_eval.pt"])
def test_a_malicious_pickle_given_as_a_resnet_file_is_refused_unexecuted(resnet50_file, tmp_path, capsys,
                                                                         monkeypatch, evil):
    _, _, params = resnet50_file
    monkeypatch.chdir(tmp_path)   # the payload would create MARKER here
    code, err = stage_exit(["--kind", "resnet", "--src", str(FIXTURES / evil), "--dst", str(tmp_path / "x.ckpt"),
                            "--params", str(params)], capsys)
    assert code == 2 and err.startswith("error: ") and evil in err and "refused to load" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / MARKER).exists() and not (tmp_path / "x.ckpt").exists()
