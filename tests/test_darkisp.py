"""DarkISP (spec §8): parameter sampling, each step against its inverse, the whole chain."""
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from dainet.data import darkisp as D
from dainet.params import ParamError, load_params

import jittor as jt

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cfg() -> D.DarkISPConfig:
    return load_params(ROOT / "params.yaml").section("darkisp").load(D.DarkISPConfig)


def rand_images(n=4, h=6, w=5, seed=0, lo=0.0, hi=1.0):
    return jt.array(np.random.default_rng(seed).uniform(lo, hi, (n, 3, h, w)).astype(np.float32))


def quiet(params):
    """The same params with the noise made negligible (pass a tiny eps too: the noise std
    is floored at sqrt(eps))."""
    n = len(params["gamma"])
    return dict(params, shot_noise=np.zeros(n, np.float32), read_noise=np.zeros(n, np.float32),
                quant_bits=np.full(n, 1e9, np.float32))


# --- config and sampling -----------------------------------------------------------------

def test_config_reads_the_spec_matrices(cfg):
    assert cfg.xyz2cams.shape == (4, 3, 3) and cfg.rgb2xyz.shape == (3, 3)
    assert cfg.quant_bits == (12, 14, 16)
    rgb2cam = D.rgb_to_camera_matrices(cfg.xyz2cams, cfg.rgb2xyz)
    np.testing.assert_allclose(rgb2cam.sum(-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(rgb2cam[0] * (cfg.xyz2cams[0] @ cfg.rgb2xyz).sum(-1, keepdims=True),
                               cfg.xyz2cams[0] @ cfg.rgb2xyz, rtol=1e-12)


def test_config_rejects_a_malformed_matrix(tmp_path):
    text = (ROOT / "params.yaml").read_text().replace(
        "[0.0193339, 0.1191920, 0.9503041]]", "[0.0193339, 0.1191920]]")
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ParamError, match=r"darkisp.rgb2xyz: expected a 3x3 matrix"):
        load_params(tmp_path / "params.yaml").section("darkisp").load(D.DarkISPConfig)


def test_sampled_params_shapes_and_ranges(cfg):
    p = D.sample_darkisp_params(500, np.random.default_rng(0), cfg)
    for key in ("gamma", "red_gain", "blue_gain", "wb_scale", "darkness", "shot_noise", "read_noise",
                "quant_bits"):
        assert p[key].shape == (500,), key
    assert p["rgb2cam"].shape == p["cam2rgb"].shape == (500, 3, 3)
    assert cfg.gamma[0] <= p["gamma"].min() and p["gamma"].max() <= cfg.gamma[1]
    assert cfg.red_gain[0] <= p["red_gain"].min() and p["red_gain"].max() <= cfg.red_gain[1]
    assert cfg.darkness_range[0] <= p["darkness"].min() and p["darkness"].max() <= cfg.darkness_range[1]
    assert cfg.shot_noise[0] <= p["shot_noise"].min() and p["shot_noise"].max() <= cfg.shot_noise[1]
    assert set(np.unique(p["quant_bits"]).tolist()) == set(cfg.quant_bits)
    cams = D.rgb_to_camera_matrices(cfg.xyz2cams, cfg.rgb2xyz)   # every camera is drawn
    drawn = {int(np.argmin(np.abs(cams - m).sum(axis=(1, 2)))) for m in p["rgb2cam"].astype(np.float64)}
    assert drawn == set(range(len(cams))) == {0, 1, 2, 3}
    resid = (np.log(p["read_noise"]) - cfg.read_noise_slope * np.log(p["shot_noise"])
             - cfg.read_noise_intercept)
    assert abs(resid.mean()) < 0.05 and abs(resid.std() - cfg.read_noise_std) < 0.03
    eye = np.einsum("nij,njk->nik", p["rgb2cam"].astype(np.float64), p["cam2rgb"].astype(np.float64))
    np.testing.assert_allclose(eye, np.broadcast_to(np.eye(3), eye.shape), atol=1e-5)


def test_darkness_is_a_truncated_normal_not_a_clipped_one(cfg):
    d = D.sample_darkisp_params(4000, np.random.default_rng(1), cfg)["darkness"].astype(np.float64)
    lo, hi = cfg.darkness_range
    mu, sigma = cfg.darkness_mean, cfg.darkness_std
    assert np.mean(d <= lo + 1e-7) < 0.01 and np.mean(d >= hi - 1e-7) < 0.01  # no mass piled on bounds
    ks = stats.kstest(d, stats.truncnorm((lo - mu) / sigma, (hi - mu) / sigma, loc=mu, scale=sigma).cdf)
    assert ks.pvalue > 0.01


def test_sampling_is_seed_deterministic(cfg):
    a = D.sample_darkisp_params(8, np.random.default_rng(5), cfg)
    b = D.sample_darkisp_params(8, np.random.default_rng(5), cfg)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


# --- each step against its inverse ---------------------------------------------------------

def smoothstep(x):
    """The reference's tone curve 3x^2 - 2x^3, whose inverse DarkISP applies."""
    return 3.0 * x * x - 2.0 * x * x * x


def test_tone_map_and_inverse_cancel():
    x = rand_images()
    np.testing.assert_allclose(smoothstep(D.inverse_tone_map(x).numpy()), x.numpy(), atol=2e-5)
    # and the inverse is not the identity
    assert np.abs(D.inverse_tone_map(x).numpy() - x.numpy()).max() > 0.02


def test_gamma_and_inverse_cancel():
    x = rand_images(lo=0.01)
    g = np.float32([2.0, 2.5, 3.0, 3.5])
    np.testing.assert_allclose(D.gamma_compress(D.gamma_expand(x, g, 1e-8), g, 1e-8).numpy(), x.numpy(),
                               rtol=1e-4)
    np.testing.assert_allclose(D.gamma_expand(x, g, 1e-8).numpy(), x.numpy() ** g[:, None, None, None],
                               rtol=1e-4)


def test_colour_matrix_and_inverse_cancel(cfg):
    x = rand_images()
    p = D.sample_darkisp_params(4, np.random.default_rng(2), cfg)
    cam = D.apply_ccm(x, p["rgb2cam"])
    expect = np.einsum("nij,njhw->nihw", p["rgb2cam"], x.numpy())  # pixel @ rgb2cam.T
    np.testing.assert_allclose(cam.numpy(), expect, atol=1e-5)
    np.testing.assert_allclose(D.apply_ccm(cam, p["cam2rgb"]).numpy(), x.numpy(), atol=1e-4)


def test_white_balance_and_inverse_cancel():
    x = rand_images()
    wb = D.white_balance_gains(np.float32([1.9, 2.0, 2.2, 2.4]), np.float32([1.5, 1.6, 1.7, 1.9]))
    np.testing.assert_array_equal(wb[:, 1], 1.0)
    out = D.apply_gains(D.apply_gains(x, 0.8 / wb), wb / 0.8)
    np.testing.assert_allclose(out.numpy(), x.numpy(), rtol=1e-5)
    np.testing.assert_allclose(D.apply_gains(x, wb).numpy()[:, 0], x.numpy()[:, 0] * wb[:, :1, None],
                               rtol=1e-6)


def test_noise_steps_have_the_specified_size():
    n, shape = 2, (2, 3, 32, 32)
    normal, uniform = D.seeded_noise(shape, seed=3)
    x = jt.full(shape, 0.04)
    shot, read = np.float32([1e-3, 1e-2]), np.float32([1e-5, 4e-4])
    noisy = (D.add_sensor_noise(x, shot, read, normal, 1e-8) - x).numpy().reshape(n, -1)
    np.testing.assert_allclose(noisy.std(axis=1), np.sqrt(0.04 * shot + read), rtol=0.1)
    bits = np.float32([12, 16])
    q = (D.add_quantisation_noise(x, bits, uniform) - x).numpy().reshape(n, -1)
    bound = 1 / (255 * bits)
    assert (np.abs(q).max(axis=1) <= bound * 1.0001).all()
    assert (np.abs(q).max(axis=1) > 0.95 * bound).all()  # it fills the interval
    assert np.abs(q.mean(axis=1)).max() < 0.1 * bound.max()


# --- the whole chain -------------------------------------------------------------------------

def test_output_finite_shaped_and_seed_deterministic(cfg):
    x = rand_images(3, 8, 7)
    p = D.sample_darkisp_params(3, np.random.default_rng(3), cfg)
    a = D.dark_isp(x, p, seed=7)
    b = D.dark_isp(x, p, seed=7)
    c = D.dark_isp(x, p, seed=8)
    assert a.shape == x.shape
    assert np.isfinite(a.numpy()).all()
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), c.numpy())


def test_darken_batch_is_deterministic_under_the_generator_seed(cfg):
    x = rand_images(2, 4, 4)
    a, pa = D.darken_batch(x, np.random.default_rng(9), cfg)
    b, pb = D.darken_batch(x, np.random.default_rng(9), cfg)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(pa["gamma"], pb["gamma"])


def test_without_darkening_or_noise_only_the_inverse_tone_map_remains(cfg):
    """Every other step meets its inverse in the right order; the tone map is not re-applied."""
    x = rand_images(4, 5, 5, lo=0.05, hi=0.95)
    p = quiet(D.sample_darkisp_params(4, np.random.default_rng(4), cfg))
    p.update(darkness=np.ones(4, np.float32), wb_scale=np.ones(4, np.float32))
    out = D.dark_isp(x, p, seed=0, eps=1e-20)
    np.testing.assert_allclose(out.numpy(), D.inverse_tone_map(x).numpy(), atol=2e-3)


def test_mid_grey_darkens_by_kd_to_the_one_over_gamma(cfg):
    """Grey stays grey through the (row-normalised) matrices and white balance:
    out = 0.5 * (k * d) ** (1 / g) per image, without noise."""
    n = 16
    x = jt.full((n, 3, 4, 4), 0.5)
    p = quiet(D.sample_darkisp_params(n, np.random.default_rng(5), cfg))
    out = D.dark_isp(x, p, seed=1, eps=1e-20).numpy()
    expect = 0.5 * (p["wb_scale"] * p["darkness"]) ** (1 / p["gamma"])
    np.testing.assert_allclose(out, np.broadcast_to(expect[:, None, None, None], out.shape), rtol=2e-3)


def test_mean_brightness_ratio_on_grey_is_within_the_darkness_bounds(cfg):
    """With noise, the batch-mean ratio dark/clean lies within what d, k and g allow."""
    n = 32
    x = jt.full((n, 3, 8, 8), 0.5)
    p = D.sample_darkisp_params(n, np.random.default_rng(6), cfg)
    out = D.dark_isp(x, p, seed=2).numpy()
    k_lo, k_hi = cfg.wb_scale_mean - 3 * cfg.wb_scale_std, cfg.wb_scale_mean + 3 * cfg.wb_scale_std
    lo = (k_lo * cfg.darkness_range[0]) ** (1 / cfg.gamma[0])   # darkest: small k d, small 1/g
    hi = (k_hi * cfg.darkness_range[1]) ** (1 / cfg.gamma[1])
    ratio = out.mean() / 0.5
    assert lo < ratio < hi
    assert 0.15 < ratio < 0.45  # and clearly dark: about a third of the clean brightness
    # noise is there: pixels of one grey image differ
    assert out.reshape(n, -1).std(axis=1).min() > 0


# --- the whole chain against an independent float64 transcription of spec §8 ----------------

def spec_darkisp(img, gamma, rgb2cam, r, b, k, d, shot, read, q, normal, uniform, eps=1e-8):
    """Spec §8 steps 1-7 for one image, written from the spec text in float64 on an HWC image
    (``pixel @ M.T``), with the per-pixel draws given: N(0, 1) ``normal`` and U(0, 1) ``uniform``."""
    x = np.transpose(img, (1, 2, 0)).astype(np.float64)
    x = 0.5 - np.sin(np.arcsin(1.0 - 2.0 * x) / 3.0)                  # 1. inverse tone map
    x = np.maximum(x, eps) ** gamma                                   #    inverse gamma
    x = x @ rgb2cam.T                                                 # 2. RGB -> camera
    x = x * (np.array([1.0 / r, 1.0, 1.0 / b]) * k)                   # 3. inverse white balance
    x = x * d                                                         # 4. darken
    x = x + normal * np.sqrt(np.maximum(x * shot + read, eps))        # 5. shot + read noise
    x = x + (2.0 * uniform - 1.0) / (255.0 * q)                       # 6. quantisation
    x = x * np.array([r, 1.0, b])                                     # 7. white balance back,
    x = x @ np.linalg.inv(rgb2cam).T                                  #    camera -> RGB,
    x = np.maximum(x, eps) ** (1.0 / gamma)                           #    gamma
    return np.transpose(x, (2, 0, 1))


def test_the_chain_equals_the_spec_transcription_on_fixed_parameters(cfg):
    rng = np.random.default_rng(11)
    img = rng.uniform(0.0, 1.0, (2, 3, 16, 12))
    xyz2cam = np.array([[0.838, -0.263, -0.0639], [-0.2887, 1.0725, 0.2496], [-0.0627, 0.1427, 0.5438]])  # #3
    srgb2xyz = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                         [0.0193339, 0.1191920, 0.9503041]])
    rgb2cam = xyz2cam @ srgb2xyz
    rgb2cam /= rgb2cam.sum(axis=1, keepdims=True)
    fixed = {"gamma": [2.2, 3.1], "red_gain": [2.0, 2.3], "blue_gain": [1.6, 1.8], "wb_scale": [0.8, 0.7],
             "darkness": [0.05, 0.09], "shot_noise": [1e-3, 5e-3], "quant_bits": [12, 16]}
    fixed["read_noise"] = [np.exp(2.18 * np.log(s) + 1.20 + z) for s, z in zip(fixed["shot_noise"], (0.1, -0.2))]
    params = {k: np.asarray(v, np.float32) for k, v in fixed.items()}
    params["rgb2cam"] = np.repeat(rgb2cam[None].astype(np.float32), 2, 0)
    params["cam2rgb"] = np.repeat(np.linalg.inv(rgb2cam)[None].astype(np.float32), 2, 0)
    got = D.dark_isp(jt.array(img.astype(np.float32)), params, seed=3).numpy()
    normal, uniform = (v.numpy().astype(np.float64) for v in D.seeded_noise(img.shape, 3))
    for i in range(2):
        want = spec_darkisp(img[i], fixed["gamma"][i], rgb2cam, fixed["red_gain"][i], fixed["blue_gain"][i],
                            fixed["wb_scale"][i], fixed["darkness"][i], fixed["shot_noise"][i], fixed["read_noise"][i],
                            fixed["quant_bits"][i], normal[i].transpose(1, 2, 0), uniform[i].transpose(1, 2, 0))
        np.testing.assert_allclose(got[i], want, rtol=2e-4, atol=2e-5)
    assert 0.01 < got.mean() < 0.6   # a dark image, not a constant


def test_drawn_parameters_follow_the_spec_laws(cfg):
    """Kolmogorov-Smirnov against each law of spec §8 on 20,000 draws (a wrong law, e.g. a
    uniform shot noise or a clipped darkness, fails with p < 1e-10)."""
    n = 20000
    p = {k: v.astype(np.float64) for k, v in D.sample_darkisp_params(n, np.random.default_rng(7), cfg).items()}
    laws = {
        "gamma": (p["gamma"], stats.uniform(2.0, 1.5).cdf),
        "red_gain": (p["red_gain"], stats.uniform(1.9, 0.5).cdf),
        "blue_gain": (p["blue_gain"], stats.uniform(1.5, 0.4).cdf),
        "wb_scale": (p["wb_scale"], stats.norm(0.8, 0.1).cdf),
        "log shot": (np.log(p["shot_noise"]), stats.uniform(np.log(1e-4), np.log(1.2e-2) - np.log(1e-4)).cdf),
        "read residual": (np.log(p["read_noise"]) - 2.18 * np.log(p["shot_noise"]) - 1.20, stats.norm(0, 0.26).cdf),
        "darkness": (p["darkness"], stats.truncnorm((0.01 - 0.1) / 0.08, 0.0, loc=0.1, scale=0.08).cdf),
    }
    for name, (x, cdf) in laws.items():
        assert stats.kstest(x, cdf).pvalue > 1e-4, name
    counts = [np.sum(p["quant_bits"] == q) for q in (12, 14, 16)]
    assert stats.chisquare(counts).pvalue > 1e-4
