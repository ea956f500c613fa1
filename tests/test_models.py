"""DAI-Net / DSFD network and Retinex DecomNet: names (spec §13), shapes, semantics, gradients."""
import math
from pathlib import Path

import numpy as np
import pytest

import dainet.jt  # noqa: F401  (configures Jittor before it loads)
import jittor as jt

from dainet.models import DAINet, ModelConfig, build_decomposer, build_model, init_weights
from dainet.models.layers import FEM, L2Norm, ReplicatePadConv2d, bilinear_resize
from dainet.models.vgg import MaxPool2x2
from helpers import paper_feature_sizes, paper_model, prior_spec
from dainet.params import ParamError, Section, load_params

SMALL = 0.125  # width of the networks that run forward passes here
PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def _np(v):
    return np.asarray(v.numpy(), dtype=np.float64)


# ---------------------------------------------------------------------------------------
# Published parameter names and shapes (spec §2, §3, §5, §13), written out from the spec
# ---------------------------------------------------------------------------------------
VGG_CONVS = {  # index: (out, in, k)
    0: (64, 3, 3), 2: (64, 64, 3), 5: (128, 64, 3), 7: (128, 128, 3),
    10: (256, 128, 3), 12: (256, 256, 3), 14: (256, 256, 3),
    17: (512, 256, 3), 19: (512, 512, 3), 21: (512, 512, 3),
    24: (512, 512, 3), 26: (512, 512, 3), 28: (512, 512, 3),
    31: (1024, 512, 3), 33: (1024, 1024, 1),
}
EXTRAS = [(256, 1024, 1), (512, 256, 3), (128, 512, 1), (256, 128, 3)]
TOPDOWN = [(256, 256), (512, 256), (1024, 512), (512, 1024), (512, 512), (256, 512)]
LATERAL = [(512, 512), (1024, 1024), (512, 512), (512, 512), (256, 256)]
SOURCES = [256, 512, 512, 1024, 512, 256]


def _conv(out, prefix, cout, cin, k):
    out[f"{prefix}.weight"] = (cout, cin, k, k)
    out[f"{prefix}.bias"] = (cout,)


def expected_dainet_shapes(reflectance=True):
    exp = {}
    for i, (o, c, k) in VGG_CONVS.items():
        _conv(exp, f"vgg.{i}", o, c, k)
    for i, (o, c, k) in enumerate(EXTRAS):
        _conv(exp, f"extras.{i}", o, c, k)
    for i, (o, c) in enumerate(TOPDOWN):
        _conv(exp, f"fpn_topdown.{i}", o, c, 1)
    for i, (o, c) in enumerate(LATERAL):
        _conv(exp, f"fpn_latlayer.{i}", o, c, 1)
    for i, c in enumerate(SOURCES):
        a, b = c // 3, c - 2 * (c // 3)
        _conv(exp, f"fpn_fem.{i}.branch1", a, c, 3)
        _conv(exp, f"fpn_fem.{i}.branch2.0", a, c, 3)
        _conv(exp, f"fpn_fem.{i}.branch2.2", a, a, 3)
        _conv(exp, f"fpn_fem.{i}.branch3.0", b, c, 3)
        _conv(exp, f"fpn_fem.{i}.branch3.2", b, b, 3)
        _conv(exp, f"fpn_fem.{i}.branch3.4", b, b, 3)
        for head, n in (("loc_pal1", 4), ("conf_pal1", 2), ("loc_pal2", 4), ("conf_pal2", 2)):
            _conv(exp, f"{head}.{i}", n, c, 3)
    for j, c in enumerate(SOURCES[:3], 1):
        exp[f"L2Normof{j}.weight"] = (c,)
        exp[f"L2Normef{j}.weight"] = (c,)
    if reflectance:
        _conv(exp, "ref.0", 64, 64, 3)
        _conv(exp, "ref.3", 3, 64, 3)
    return exp


def _shapes(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_published_names_and_shapes_width_1():
    net = DAINet(paper_model(), reflectance=True)  # built only, no forward pass
    got = _shapes(net)
    exp = expected_dainet_shapes(True)
    assert sorted(got) == sorted(exp)
    assert got == exp
    # nothing but parameters in the state dict (no buffers a checkpoint would lack)
    assert len(net.parameters()) == len(exp)


def test_dsfd_variant_has_no_ref():
    got = _shapes(DAINet(paper_model(), reflectance=False))
    assert got == expected_dainet_shapes(False)
    assert not any(k.startswith("ref.") for k in got)


def test_decomposer_names_and_shapes():
    got = _shapes(build_decomposer(paper_model()))
    exp = {}
    _conv(exp, "DecomNet.net1_conv0", 64, 4, 9)
    for i in (0, 2, 4, 6, 8):
        _conv(exp, f"DecomNet.net1_convs.{i}", 64, 64, 3)
    _conv(exp, "DecomNet.net1_recon", 4, 64, 3)
    assert got == exp


def test_decomposer_forward():
    dec = init_weights(build_decomposer(paper_model(decomp_channels=8)), seed=1)
    img = jt.array(np.random.default_rng(0).random((2, 3, 17, 22)).astype(np.float32))
    R, I = dec(img)
    assert tuple(R.shape) == (2, 3, 17, 22) and tuple(I.shape) == (2, 1, 17, 22)
    r, i = _np(R), _np(I)
    assert (r > 0).all() and (r < 1).all() and (i > 0).all() and (i < 1).all()


def test_replicate_pad_conv_matches_numpy():
    rng = np.random.default_rng(3)
    conv = ReplicatePadConv2d(2, 3, 5)
    w = rng.standard_normal((3, 2, 5, 5)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    conv.weight.assign(jt.array(w))
    conv.bias.assign(jt.array(b))
    x = rng.standard_normal((1, 2, 6, 7)).astype(np.float32)
    got = _np(conv(jt.array(x)))
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (2, 2), (2, 2)), mode="edge")
    ref = np.zeros((1, 3, 6, 7)) + b[None, :, None, None]
    for dy in range(5):
        for dx in range(5):
            ref += np.einsum("oc,nchw->nohw", w[:, :, dy, dx], xp[:, :, dy:dy + 6, dx:dx + 7])
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------
# Config / params
# ---------------------------------------------------------------------------------------
def test_config_taps_and_channels():
    cfg = paper_model()
    assert cfg.taps.shallow == 4 and cfg.taps.sources == (15, 22, 29, 34)
    assert cfg.source_channels == SOURCES and cfg.shallow_channels == 64
    net = DAINet(cfg)
    assert len(net.vgg) == 35
    assert [i for i, m in enumerate(net.vgg) if isinstance(m, jt.nn.Conv2d)] == sorted(VGG_CONVS)
    half = paper_model(width=0.5)
    assert half.source_channels == [128, 256, 256, 512, 256, 128]
    assert half.ch(1) == 1  # never below one channel


def test_config_from_params_and_errors(tmp_path):
    cfg = load_params(PARAMS).section("model").load(ModelConfig)
    assert cfg.vgg_cfg == paper_model().vgg_cfg and cfg.width > 0
    data = load_params(PARAMS).section("model").to_dict()
    with pytest.raises(ParamError, match=r"^p.yaml: model\.vgg_cfg: expected a list of 1 or more integers"):
        Section(dict(data, vgg_cfg=[64, "X", "M"]), "model", "p.yaml").load(ModelConfig)   # the schema
    with pytest.raises(ParamError, match=r"^p.yaml: model\.vgg_cfg: needs exactly 5 pools"):
        Section(dict(data, vgg_cfg=[64, "M", 64, "M"]), "model", "p.yaml").load(ModelConfig)   # __post_init__
    with pytest.raises(ParamError, match=r"^p.yaml: model\.width: 0.005 leaves a FEM input"):
        Section(dict(data, width=0.005), "model", "p.yaml").load(ModelConfig)
    # build_model accepts the params section directly
    net = build_model(load_params(PARAMS).section("model"), reflectance=False)
    assert not hasattr(net, "ref")


# ---------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------
def np_bilinear_align_corners_false(x, out_hw):
    """PyTorch F.interpolate(mode='bilinear', align_corners=False) in float64."""
    def axis(n_out, n_in):
        src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0
    y0, y1, ly = axis(out_hw[0], x.shape[2])
    x0, x1, lx = axis(out_hw[1], x.shape[3])
    top = x[:, :, y0][:, :, :, x0] * (1 - lx) + x[:, :, y0][:, :, :, x1] * lx
    bot = x[:, :, y1][:, :, :, x0] * (1 - lx) + x[:, :, y1][:, :, :, x1] * lx
    return top * (1 - ly)[:, None] + bot * ly[:, None]


@pytest.mark.parametrize("src,dst", [((2, 3), (4, 6)), ((3, 5), (5, 9)), ((5, 8), (10, 16)),
                                     ((3, 3), (3, 5)), ((1, 1), (2, 3)), ((4, 4), (4, 4))])
def test_bilinear_matches_pytorch_align_corners_false(src, dst):
    x = np.random.default_rng(0).standard_normal((2, 3, *src))
    got = _np(bilinear_resize(jt.array(x.astype(np.float32)), dst))
    np.testing.assert_allclose(got, np_bilinear_align_corners_false(x, dst), rtol=1e-5, atol=1e-5)


# (1, 3) in floor mode pools to nothing (PyTorch gives an empty map; never met in the network)
POOL_CASES = [(hw, ceil) for hw in [(6, 8), (7, 9), (2, 2), (3, 2), (1, 3), (8, 6)] for ceil in (False, True)
              if ceil or min(hw) >= 2]


@pytest.mark.parametrize("hw, ceil", POOL_CASES)
def test_maxpool2x2_matches_pytorch_sizes_and_values(hw, ceil):
    h, w = hw
    x = np.random.default_rng(1).standard_normal((1, 2, h, w))
    oh, ow = ((h + 1) // 2, (w + 1) // 2) if ceil else (h // 2, w // 2)
    got = _np(MaxPool2x2(ceil)(jt.array(x.astype(np.float32))))
    assert got.shape == (1, 2, oh, ow)
    ref = np.full((1, 2, oh, ow), -np.inf)
    for i in range(oh):
        for j in range(ow):
            ref[:, :, i, j] = x[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].max(axis=(2, 3))
    np.testing.assert_allclose(got, ref, rtol=1e-6)


def _brute_force_pool_grad(x: np.ndarray, upstream: np.ndarray, ceil: bool) -> np.ndarray:
    """PyTorch's MaxPool2d(2, 2) backward: each window's gradient to its first maximum (row-major)."""
    n, c, h, w = x.shape
    oh, ow = upstream.shape[2:]
    g = np.zeros_like(x, dtype=np.float64)
    for b in range(n):
        for ch in range(c):
            for i in range(oh):
                for j in range(ow):
                    best = None
                    for di in range(2):
                        for dj in range(2):
                            r, s = 2 * i + di, 2 * j + dj
                            if r < h and s < w and (best is None or x[b, ch, r, s] > x[b, ch, best[0], best[1]]):
                                best = (r, s)
                    g[b, ch, best[0], best[1]] += upstream[b, ch, i, j]
    return g


@pytest.mark.parametrize("hw, ceil", POOL_CASES)
def test_maxpool2x2_gradient_goes_to_one_element_per_window(hw, ceil):
    """All-ones input: exactly 1 per window, on its first element (not 4, as a reduce-max gives)."""
    h, w = hw
    oh, ow = ((h + 1) // 2, (w + 1) // 2) if ceil else (h // 2, w // 2)
    rng = np.random.default_rng(3)
    for x in (np.ones((1, 2, h, w)), rng.integers(0, 3, size=(2, 2, h, w)).astype(np.float64)):
        up = rng.uniform(0.5, 2.0, size=(x.shape[0], 2, oh, ow))
        xv = jt.array(x.astype(np.float32))
        y = MaxPool2x2(ceil)(xv)
        assert tuple(y.shape) == (x.shape[0], 2, oh, ow)
        got = _np(jt.grad((y * jt.array(up.astype(np.float32))).sum(), xv))
        np.testing.assert_allclose(got, _brute_force_pool_grad(x, up, ceil), rtol=1e-6, atol=1e-7)
        if x.min() == 1.0:  # the all-ones case, stated directly
            ones = _np(jt.grad(y.sum(), xv))
            assert ones.sum() == 2 * oh * ow and set(np.unique(ones)) <= {0.0, 1.0}


def test_l2norm_formula_and_finite_gradient_at_zero():
    x = np.random.default_rng(2).standard_normal((1, 4, 3, 3)).astype(np.float32)
    x[:, :, 1, 1] = 0.0  # an all-zero position (common after ReLU)
    layer = L2Norm(4, 10.0, eps=1e-10)
    xv = jt.array(x)
    y = layer(xv)
    ref = 10.0 * x / (np.sqrt((x.astype(np.float64) ** 2).sum(1, keepdims=True)) + 1e-10)
    np.testing.assert_allclose(_np(y), ref, rtol=1e-5, atol=1e-6)
    g = _np(jt.grad((y * jt.array(x + 1.0)).sum(), xv))
    assert np.isfinite(g).all()


def test_fem_split():
    fem = FEM(32)
    assert fem.branch1.out_channels == 10 and fem.branch2[2].out_channels == 10
    assert fem.branch3[4].out_channels == 12
    y = fem(jt.rand(1, 32, 5, 5))
    assert tuple(y.shape) == (1, 32, 5, 5) and _np(y).min() >= 0


# ---------------------------------------------------------------------------------------
# Forward shapes
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_net():
    return init_weights(DAINet(paper_model(width=SMALL), reflectance=True), seed=0)


@pytest.mark.parametrize("hw", [(640, 640), (333, 517)])
def test_head_shapes(small_net, hw):
    h, w = hw
    sizes = paper_feature_sizes(h, w)
    P = sum(a * b for a, b in sizes)
    if hw == (640, 640):
        assert P == 34125
    assert prior_spec(model=small_net.cfg).feature_sizes((h, w)) == sizes
    x = jt.array(np.random.default_rng(0).random((1, 3, h, w)).astype(np.float32))
    feats = small_net.features(x)
    assert [tuple(feats[f"of{k}"].shape[2:]) for k in range(1, 7)] == sizes
    assert [tuple(feats[f"ef{k}"].shape[2:]) for k in range(1, 7)] == sizes
    loc, conf, R = small_net(x)
    assert tuple(loc.shape) == (1, P, 4) and tuple(conf.shape) == (1, P, 2)
    assert tuple(R.shape) == (1, 3, h // 2 * 2, w // 2 * 2)


def test_head_layout_is_nhwc_row_major(small_net):
    """Prior p of level 0 is cell (p // fw, p % fw): the loc conv's NHWC flattening."""
    x = jt.array(np.random.default_rng(5).random((1, 3, 64, 96)).astype(np.float32))
    feats = small_net.features(x)
    loc, conf, _ = small_net(x)
    direct = _np(small_net.loc_pal2[0](feats["ef1"]))[0]     # [4, fh, fw]
    fh, fw = direct.shape[1:]
    np.testing.assert_allclose(_np(loc)[0, :fh * fw], direct.reshape(4, -1).T, rtol=1e-5, atol=1e-5)
    last = _np(small_net.conf_pal2[5](feats["ef6"]))[0]
    np.testing.assert_allclose(_np(conf)[0, -last.shape[1] * last.shape[2]:],
                               last.reshape(2, -1).T, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------
# Training forward: batching, interchange, stop-gradient
# ---------------------------------------------------------------------------------------
def _train_inputs(n=2, size=64, seed=0):
    rng = np.random.default_rng(seed)
    light = rng.random((n, 3, size, size)).astype(np.float32)
    dark = (light * 0.2 + 0.01 * rng.random(light.shape)).astype(np.float32)
    I_dark = rng.uniform(0.05, 0.3, (n, 1, size, size)).astype(np.float32)
    I_light = rng.uniform(0.4, 1.0, (n, 1, size, size)).astype(np.float32)
    return [jt.array(a) for a in (dark, light, I_dark, I_light)]


def test_forward_train_matches_separate_passes(small_net):
    dark, light, I_dark, I_light = _train_inputs()
    out = small_net.forward_train(dark, light, I_dark, I_light)
    n, c = 2, small_net.cfg.shallow_channels
    for k in ("R_dark", "R_light", "R_dark_2", "R_light_2"):
        assert tuple(out[k].shape) == (n, 3, 64, 64)
    for k in ("g_dark", "g_light", "g_dark2", "g_light2"):
        assert tuple(out[k].shape) == (n, c)
    net = small_net
    xs_dark, xs_light = net.shallow(dark), net.shallow(light)
    R_dark, R_light = net.ref(xs_dark), net.ref(xs_light)
    xs_light2, xs_dark2 = net.shallow(I_light * R_dark), net.shallow(I_dark * R_light)
    expected = {"R_dark": R_dark, "R_light": R_light,
                "R_dark_2": net.ref(xs_light2), "R_light_2": net.ref(xs_dark2),
                "g_dark": xs_dark.mean(dims=(2, 3)), "g_light": xs_light.mean(dims=(2, 3)),
                "g_light2": xs_light2.mean(dims=(2, 3)), "g_dark2": xs_dark2.mean(dims=(2, 3))}
    loc2, conf2, _ = net(dark)
    expected.update(loc2=loc2, conf2=conf2)
    for k, v in expected.items():
        np.testing.assert_allclose(_np(out[k]), _np(v), rtol=1e-4, atol=1e-5, err_msg=k)


def test_interchange_has_no_gradient_path(small_net):
    dark, light, I_dark, I_light = _train_inputs(seed=1)
    out = small_net.forward_train(dark, light, I_dark, I_light)
    # R_dark_2 = ref(shallow(I_light * R_dark)): dark reaches it only through the stopped product
    g_stop = jt.grad(out["R_dark_2"].sum(), [dark, light, I_light])
    assert all(np.abs(_np(g)).max() == 0 for g in g_stop)
    g_live = jt.grad(out["R_dark"].sum(), dark)
    assert np.abs(_np(g_live)).max() > 0
    # ... while the re-decomposition itself trains the shared layers
    g_ref = jt.grad(out["R_dark_2"].sum(), small_net.ref[0].weight)
    assert np.abs(_np(g_ref)).max() > 0


def test_odd_training_size_is_a_user_error(small_net):
    from dainet.errors import UserError
    x = jt.rand(1, 3, 33, 32)
    with pytest.raises(UserError, match="even"):
        small_net.forward_train(x, x, x[:, :1], x[:, :1])


def test_dsfd_forward_train_and_execute():
    net = init_weights(DAINet(paper_model(width=SMALL), reflectance=False), seed=0)
    x = jt.rand(1, 3, 64, 64)
    out = net.forward_train(x)
    assert sorted(out) == ["conf1", "conf2", "loc1", "loc2"]
    P = sum(a * b for a, b in paper_feature_sizes(64, 64))
    assert tuple(out["loc1"].shape) == (1, P, 4)
    loc, conf, R = net(x)
    assert R is None and tuple(conf.shape) == (1, P, 2)


def test_one_sgd_step_updates_every_parameter():
    from dainet.losses.enhance import enhancement_loss, reflectance_loss
    from dainet.losses.mutual import mutual_loss

    net = init_weights(DAINet(paper_model(width=SMALL), reflectance=True), seed=2)
    # With zero biases the products of the top-down path shrink the enhanced maps of this
    # untrained, tiny network to ~1e-13 and many updates fall below float32 resolution;
    # positive biases keep activations O(1) so that every update is visible.
    for k, v in net.state_dict().items():
        if k.endswith(".bias"):
            v.assign(jt.full(v.shape, 0.1, dtype="float32"))
    dark, light, I_dark, I_light = _train_inputs(seed=2)
    out = net.forward_train(dark, light, I_dark, I_light)
    det = sum(out[k].sqr().mean() for k in ("loc1", "conf1", "loc2", "conf2"))
    loss = (det
            + enhancement_loss(out["R_dark"], out["R_light"], out["R_dark_2"], out["R_light_2"],
                               I_dark, I_light, dark, light)
            + reflectance_loss(out["R_dark"], out["R_light"], light, light)
            + mutual_loss(out["g_light"], out["g_dark"], out["g_light2"], out["g_dark2"]))
    names = list(net.state_dict().keys())
    before = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    opt = jt.optim.SGD(net.parameters(), lr=1e-2)
    opt.step(loss)
    after = {k: v.numpy() for k, v in net.state_dict().items()}
    unchanged = [k for k in names if np.array_equal(before[k], after[k])]
    assert unchanged == []
    assert any(k.startswith("ref.") for k in names)


# ---------------------------------------------------------------------------------------
# Initialisation
# ---------------------------------------------------------------------------------------
def test_init_weights_deterministic_xavier_and_constants():
    cfg = paper_model(width=SMALL)
    a = init_weights(DAINet(cfg), seed=7).state_dict()
    b = init_weights(DAINet(cfg), seed=7).state_dict()
    c = init_weights(DAINet(cfg), seed=8).state_dict()
    for k in a:
        assert np.array_equal(a[k].numpy(), b[k].numpy()), k
    assert not np.array_equal(a["vgg.0.weight"].numpy(), c["vgg.0.weight"].numpy())
    for k, v in a.items():
        v = v.numpy()
        if k.startswith("L2Norm"):
            scale = {"1": 10.0, "2": 8.0, "3": 5.0}[k[len("L2Normof")]]
            assert np.all(v == scale), k
        elif k.endswith(".bias"):
            assert np.all(v == 0), k
        else:
            o, i, kh, kw = v.shape
            bound = math.sqrt(6.0 / ((i + o) * kh * kw))
            assert np.abs(v).max() <= bound + 1e-7, k
            if v.size >= 2000:  # U(-a, a) has std a / sqrt(3)
                assert abs(v.std() / (bound / math.sqrt(3)) - 1) < 0.1, k


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_norm_option_keeps_every_published_name_and_adds_norm_layers(norm):
    from dainet.models.layers import NormConv2d, norm_groups
    plain = {k: tuple(v.shape) for k, v in DAINet(paper_model(width=SMALL)).state_dict().items()}
    normed = {k: tuple(v.shape) for k, v in DAINet(paper_model(width=SMALL, norm=norm)).state_dict().items()}
    assert {k: v for k, v in normed.items() if ".norm." not in k} == plain
    extra = {k.split(".norm.")[0] for k in normed if ".norm." in k}
    # every backbone / extras / FPN / FEM conv, no head, no reflectance decoder
    assert "vgg.0" in extra and "vgg.33" in extra and "extras.3" in extra and "fpn_topdown.0" in extra
    assert "fpn_latlayer.4" in extra and "fpn_fem.5.branch3.4" in extra
    assert not any(k.startswith(("loc_pal", "conf_pal", "ref.")) for k in extra)
    assert norm_groups(64, 8) == 8 and norm_groups(21, 8) == 1 and norm_groups(85, 8) == 5
    net = init_weights(DAINet(paper_model(width=SMALL, norm=norm)), seed=0)
    assert isinstance(net.vgg[0], NormConv2d)
    x = jt.array(np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32))
    out = net.forward_train(x, x, jt.ones((2, 1, 64, 64)), jt.ones((2, 1, 64, 64)))
    # normalised features: the second shot is alive from the first step (spec §14)
    fem = net.pyramid(net.shallow(x))["ef4"]   # FEM output without an L2Norm after it
    assert float(fem.sqr().mean().item()) > 1e-2
    assert np.isfinite(out["loc2"].numpy()).all()


def test_separate_streams_normalise_each_stream_alone_and_only_the_dark_one_updates_the_statistics():
    net = init_weights(DAINet(paper_model(width=SMALL, norm="batch", norm_scope="backbone")), seed=0)
    rng = np.random.default_rng(1)
    dark = jt.array(rng.random((2, 3, 32, 32), dtype=np.float32) * 0.1)   # dark and light differ in mean
    light = jt.array(rng.random((2, 3, 32, 32), dtype=np.float32))
    I = jt.ones((2, 1, 32, 32))
    stats = lambda: {k: v.numpy().copy() for k, v in net.state_dict().items() if "running" in k}  # noqa: E731
    start = stats()
    stem = [k for k in start if int(k.split(".")[1]) <= net._stages[0][1]]
    assert stem and len(stem) < len(start)
    alone = net.shallow(dark).numpy()                     # the dark stream alone, one stats update
    after_dark = stats()
    for k, v in start.items():
        net.state_dict()[k].update(v)
    out = net.forward_train(dark, light, I, I, separate_streams=True)
    separate = stats()
    assert all(np.array_equal(separate[k], after_dark[k]) for k in stem)   # light, light2, dark2: no update
    net.eval()
    for k, v in start.items():
        net.state_dict()[k].update(v)
    net.train()
    shared = net.forward_train(dark, light, I, I, separate_streams=False)
    assert not np.allclose(stats()[stem[0]], separate[stem[0]])    # mixed with the light images
    # the detection input of the separate pass is the dark stream normalised alone
    det = net.detect_train(jt.array(alone))
    np.testing.assert_allclose(out["conf2"].numpy(), det["conf2"].numpy(), rtol=1e-4, atol=1e-5)
    assert not np.allclose(shared["conf2"].numpy(), det["conf2"].numpy(), rtol=1e-4, atol=1e-5)


def test_norm_must_be_known():
    data = load_params(PARAMS).section("model").to_dict()
    with pytest.raises(ParamError, match=r"^p.yaml: model.norm: expected one of none\|batch\|group, got 'layer'$"):
        Section(dict(data, norm="layer"), "model", "p.yaml").load(ModelConfig)
