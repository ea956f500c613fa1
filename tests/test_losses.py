"""SSIM, Retinex smoothness / decomposition, enhancement, reflectance and mutual KL losses
against direct float64 numpy formulas (spec §5, §6, §9)."""
import numpy as np
import pytest

import dainet.jt  # noqa: F401  (configures Jittor before it loads)
import jittor as jt

from dainet.losses.enhance import enhancement_loss, reflectance_loss
from dainet.losses.mutual import mutual_kl, mutual_loss
from dainet.losses.retinex import decomposition_loss, smooth
from dainet.losses.ssim import ssim


def _np(v):
    return float(np.asarray(v.numpy(), dtype=np.float64).reshape(()))


def _rand(rng, *shape, lo=0.0, hi=1.0):
    return rng.uniform(lo, hi, shape).astype(np.float32)


# ------------------------------- numpy references (float64, loops) -------------------
def np_ssim(a, b, window=11, sigma=1.5, k1=0.01, k2=0.03, crop=True):
    """torchmetrics' default SSIM written out: 2-D Gaussian window, reflect pad, [crop,] mean."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    L = max(a.max() - a.min(), b.max() - b.min())
    c1, c2 = (k1 * L) ** 2, (k2 * L) ** 2
    x = np.arange(window) - (window - 1) / 2
    g = np.exp(-0.5 * (x / sigma) ** 2)
    g /= g.sum()
    kernel = np.outer(g, g)
    p = (window - 1) // 2
    n, c, h, w = a.shape

    def filt(img):
        padded = np.pad(img, ((0, 0), (0, 0), (p, p), (p, p)), mode="reflect")
        out = np.zeros_like(img)
        for dy in range(window):
            for dx in range(window):
                out += kernel[dy, dx] * padded[:, :, dy:dy + h, dx:dx + w]
        return out

    mu_a, mu_b = filt(a), filt(b)
    var_a = np.maximum(filt(a * a) - mu_a ** 2, 0)
    var_b = np.maximum(filt(b * b) - mu_b ** 2, 0)
    cov = filt(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    if crop:
        s = s[:, :, p:h - p, p:w - p]
    return s.reshape(n, -1).mean(1).mean()


def np_smooth(I, R, edge=10.0):
    """RetinexNet smoothness: conv2d with [[0,0],[-1,1]] / transpose, padding 1; avg_pool 3/1/1."""
    I, R = I.astype(np.float64), R.astype(np.float64)
    grey = 0.299 * R[:, 0:1] + 0.587 * R[:, 1:2] + 0.114 * R[:, 2:3]

    def conv2x2(x, k):  # cross-correlation, zero padding 1 -> (H+1, W+1)
        xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        h, w = x.shape[2] + 1, x.shape[3] + 1
        out = np.zeros(x.shape[:2] + (h, w))
        for i in range(h):
            for j in range(w):
                out[:, :, i, j] = (xp[:, :, i:i + 2, j:j + 2] * k).sum(axis=(2, 3))
        return np.abs(out)

    def avg3(x):
        xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        out = np.zeros_like(x)
        for i in range(x.shape[2]):
            for j in range(x.shape[3]):
                out[:, :, i, j] = xp[:, :, i:i + 3, j:j + 3].sum(axis=(2, 3)) / 9.0
        return out

    kx = np.array([[0.0, 0.0], [-1.0, 1.0]])
    total = 0
    for k in (kx, kx.T):
        total = total + conv2x2(I, k) * np.exp(-edge * avg3(conv2x2(grey, k)))
    return total.mean()


def np_log_softmax(x):
    x = x - x.max(1, keepdims=True)
    return x - np.log(np.exp(x).sum(1, keepdims=True))


def np_kl(s, t, T):
    ls, lt = np_log_softmax(s / T), np_log_softmax(t / T)
    return (np.exp(lt) * (lt - ls)).sum() * T * T / s.shape[0]


# ------------------------------- SSIM -----------------------------------------------
def test_ssim_of_identical_images_is_one():
    x = _rand(np.random.default_rng(0), 2, 3, 24, 20)
    # float32 E[x^2] - mu^2 (as in torchmetrics) leaves ~1e-6 of noise
    assert abs(_np(ssim(jt.array(x), jt.array(x))) - 1.0) < 1e-5


@pytest.mark.parametrize("shape", [(2, 3, 20, 23), (1, 1, 16, 16)])
def test_ssim_matches_numpy(shape):
    rng = np.random.default_rng(1)
    a = _rand(rng, *shape)
    b = np.clip(a * 0.6 + 0.3 * _rand(rng, *shape) + 0.05, 0, 1).astype(np.float32)
    got = _np(ssim(jt.array(a), jt.array(b)))
    ref = np_ssim(a, b)
    assert 0 < ref < 0.99
    assert abs(got - ref) < 1e-5
    assert abs(_np(ssim(jt.array(b), jt.array(a))) - ref) < 1e-5  # symmetric


@pytest.mark.parametrize("crop", [True, False])
def test_ssim_border_convention_matches_numpy(crop):
    """crop_border=True: torchmetrics <= 1.4.1 (map cropped by 5 px); False: >= 1.4.2 (full map)."""
    rng = np.random.default_rng(11)
    a = _rand(rng, 2, 3, 32, 28)
    b = np.clip(a * 0.5 + 0.4 * _rand(rng, 2, 3, 32, 28), 0, 1).astype(np.float32)
    got = _np(ssim(jt.array(a), jt.array(b), crop_border=crop))
    assert abs(got - np_ssim(a, b, crop=crop)) < 1e-5
    assert abs(got - np_ssim(a, b, crop=not crop)) > 1e-3  # the two conventions differ here


def test_ssim_crop_border_reaches_both_reflectance_losses(enh_inputs):
    _, v = enh_inputs
    gt_d, gt_l = v["R_light"], v["R_dark_2"]
    for loss in (lambda c: reflectance_loss(v["R_dark"], v["R_light"], gt_d, gt_l, ssim_crop_border=c),
                 lambda c: enhancement_loss(**v, ssim_crop_border=c)):
        assert abs(_np(loss(True)) - _np(loss(False))) > 1e-5


def test_large_means_accumulate_in_float64():
    """Jittor's float32 mean drifts ~1e-3 over millions of values; the losses use mean64."""
    from dainet.losses.enhance import mse
    from dainet.losses.retinex import l1
    from dainet.models.dainet import global_pool
    from dainet.utils.numerics import mean64
    rng = np.random.default_rng(12)
    x = rng.random((5, 1, 1000, 1000), dtype=np.float32)   # 5M values
    ref = x.astype(np.float64).mean()
    assert abs(_np(mean64(jt.array(x))) - ref) < 1e-7 * ref
    zero = jt.zeros(x.shape)
    assert abs(_np(l1(jt.array(x), zero)) - ref) < 1e-7 * ref
    assert abs(_np(mse(jt.array(x), zero)) - (x.astype(np.float64) ** 2).mean()) < 1e-7
    pooled = global_pool(jt.array(x.reshape(1, 5, 1000, 1000))).numpy()
    np.testing.assert_allclose(pooled[0], x.astype(np.float64).reshape(5, -1).mean(1), rtol=1e-7)
    assert abs(_np(ssim(jt.array(x[:1]), jt.array(x[:1]), crop_border=False)) - 1.0) < 1e-5


def test_ssim_window_and_sigma_are_used():
    rng = np.random.default_rng(2)
    a, b = _rand(rng, 1, 3, 20, 20), _rand(rng, 1, 3, 20, 20)
    got = _np(ssim(jt.array(a), jt.array(b), window=7, sigma=1.0))
    assert abs(got - np_ssim(a, b, 7, 1.0)) < 1e-5
    assert abs(got - np_ssim(a, b)) > 1e-4


# ------------------------------- Retinex -------------------------------------------
def test_smooth_matches_numpy():
    rng = np.random.default_rng(3)
    I, R = _rand(rng, 2, 1, 9, 12), _rand(rng, 2, 3, 9, 12)
    got = _np(smooth(jt.array(I), jt.array(R)))
    assert abs(got - np_smooth(I, R)) < 1e-6
    assert abs(_np(smooth(jt.array(I), jt.array(R), edge=3.0)) - np_smooth(I, R, 3.0)) < 1e-6


def test_smooth_of_constant_illumination_is_zero_inside():
    # a constant I still has its border step against the zero padding: only that remains
    I = np.full((1, 1, 6, 6), 0.5, np.float32)
    R = _rand(np.random.default_rng(4), 1, 3, 6, 6)
    assert abs(_np(smooth(jt.array(I), jt.array(R))) - np_smooth(I, R)) < 1e-6


def test_decomposition_loss_matches_numpy_and_stops_R_high():
    rng = np.random.default_rng(5)
    R_low, R_high = _rand(rng, 2, 3, 10, 10), _rand(rng, 2, 3, 10, 10)
    I_low, I_high = _rand(rng, 2, 1, 10, 10), _rand(rng, 2, 1, 10, 10)
    low, high = _rand(rng, 2, 3, 10, 10), _rand(rng, 2, 3, 10, 10)
    l1 = lambda a, b: np.abs(a.astype(np.float64) - b).mean()  # noqa: E731
    ref = (l1(R_low * I_low, low) + l1(R_high * I_high, high)
           + 0.001 * (l1(R_high * I_low, low) + l1(R_low * I_high, high))
           + 0.1 * (np_smooth(I_low, R_low) + np_smooth(I_high, R_high))
           + 0.01 * l1(R_low, R_high))
    v = [jt.array(a) for a in (R_low, I_low, R_high, I_high, low, high)]
    assert abs(_np(decomposition_loss(*v)) - ref) < 1e-5
    # the equal-R term is a pull on R_low only: R_high's gradient does not see its weight
    g_a = jt.grad(decomposition_loss(*v, w_equal_r=0.01), v[2]).numpy()
    g_b = jt.grad(decomposition_loss(*v, w_equal_r=50.0), v[2]).numpy()
    np.testing.assert_allclose(g_a, g_b, rtol=1e-5, atol=1e-9)
    g_c = jt.grad(decomposition_loss(*v, w_equal_r=50.0), v[0]).numpy()
    assert np.abs(g_c - jt.grad(decomposition_loss(*v), v[0]).numpy()).max() > 1e-6


# ------------------------------- enhancement / reflectance --------------------------
@pytest.fixture
def enh_inputs():
    rng = np.random.default_rng(6)
    shape3, shape1 = (2, 3, 16, 16), (2, 1, 16, 16)
    arrs = dict(R_dark=_rand(rng, *shape3), R_light=_rand(rng, *shape3),
                R_dark_2=_rand(rng, *shape3), R_light_2=_rand(rng, *shape3),
                I_dark=_rand(rng, *shape1, lo=0.05, hi=0.3), I_light=_rand(rng, *shape1, lo=0.5),
                dark=_rand(rng, *shape3, hi=0.3), light=_rand(rng, *shape3))
    return arrs, {k: jt.array(v) for k, v in arrs.items()}


def test_enhancement_loss_matches_numpy(enh_inputs):
    a, v = enh_inputs
    mse = lambda x, y: ((x.astype(np.float64) - y) ** 2).mean()  # noqa: E731
    w = dict(weight=0.1, w_equal_r=0.01, w_smooth=0.5, w_redecomp=0.001)
    ref = w["weight"] * (
        w["w_equal_r"] * mse(a["R_dark"], a["R_light"])
        + mse(a["R_dark"] * a["I_dark"], a["dark"]) + 1 - np_ssim(a["R_dark"] * a["I_dark"], a["dark"])
        + mse(a["R_light"] * a["I_light"], a["light"]) + 1 - np_ssim(a["R_light"] * a["I_light"], a["light"])
        + w["w_smooth"] * (np_smooth(a["I_dark"], a["R_dark"]) + np_smooth(a["I_light"], a["R_light"]))
        + w["w_redecomp"] * (mse(a["R_dark_2"], a["R_dark"]) + mse(a["R_light_2"], a["R_light"])))
    got = _np(enhancement_loss(**v, **w))
    assert abs(got - ref) < 1e-5
    # every weight is used
    assert abs(_np(enhancement_loss(**v, **dict(w, w_redecomp=1.0))) - got) > 1e-4
    assert abs(_np(enhancement_loss(**v, **dict(w, weight=0.2))) - 2 * got) < 1e-5


def test_enhancement_loss_stop_gradients(enh_inputs):
    _, v = enh_inputs

    def grad(of, **w):
        return jt.grad(enhancement_loss(**v, **w), v[of]).numpy()
    # R_light enters the equal-R term, R_dark the re-decomposition terms, only as targets
    np.testing.assert_allclose(grad("R_light", w_equal_r=0.01), grad("R_light", w_equal_r=9.0), atol=1e-9)
    np.testing.assert_allclose(grad("R_dark", w_redecomp=0.001), grad("R_dark", w_redecomp=9.0), atol=1e-9)
    assert np.abs(grad("I_dark")).max() == 0          # the decomposer's output is frozen
    assert np.abs(grad("R_dark_2")).max() > 0


def test_reflectance_loss_matches_numpy_and_stops_gt(enh_inputs):
    a, v = enh_inputs
    rng = np.random.default_rng(7)
    gt_d, gt_l = _rand(rng, 2, 3, 16, 16), _rand(rng, 2, 3, 16, 16)
    l1 = lambda x, y: np.abs(x.astype(np.float64) - y).mean()  # noqa: E731
    ref = (l1(a["R_dark"], gt_d) + l1(a["R_light"], gt_l)
           + 2 - np_ssim(a["R_dark"], gt_d) - np_ssim(a["R_light"], gt_l))
    gd, gl = jt.array(gt_d), jt.array(gt_l)
    loss = reflectance_loss(v["R_dark"], v["R_light"], gd, gl)
    assert abs(_np(loss) - ref) < 1e-5
    g_gt, g_r = jt.grad(loss, [gd, v["R_dark"]])
    assert np.abs(g_gt.numpy()).max() == 0 and np.abs(g_r.numpy()).max() > 0


# ------------------------------- mutual KL ------------------------------------------
def test_mutual_kl_matches_numpy():
    rng = np.random.default_rng(8)
    s, t = rng.normal(0, 3, (4, 64)).astype(np.float32), rng.normal(0, 3, (4, 64)).astype(np.float32)
    for T in (4.0, 1.0):
        assert abs(_np(mutual_kl(jt.array(s), jt.array(t), T)) - np_kl(s, t, T)) < 1e-5
    assert abs(_np(mutual_kl(jt.array(s), jt.array(s)))) < 1e-6
    assert np_kl(s, t, 4.0) > 0


def test_mutual_loss_is_weighted_symmetric_sum():
    rng = np.random.default_rng(9)
    g = [rng.normal(0, 2, (3, 8)).astype(np.float32) for _ in range(4)]
    gl, gd, gl2, gd2 = g
    ref = 0.1 * (np_kl(gl, gd, 4) + np_kl(gd, gl, 4) + np_kl(gl2, gd2, 4) + np_kl(gd2, gl2, 4))
    got = _np(mutual_loss(*[jt.array(x) for x in g], weight=0.1, T=4.0))
    assert abs(got - ref) < 1e-5
    # both sides of each pair get gradient (neither is stopped)
    vs = [jt.array(x) for x in g]
    grads = jt.grad(mutual_loss(*vs), vs)
    assert all(np.abs(gr.numpy()).max() > 0 for gr in grads)
