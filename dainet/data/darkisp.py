"""DarkISP: the synthetic low-light degradation of spec §8, batched in Jittor.

A clean sRGB batch is "unprocessed" back to a linear camera signal, darkened, given
sensor noise and re-processed to sRGB::

    inverse tone map -> inverse gamma (g) -> RGB->camera -> inverse white balance (k/r, k, k/b)
    -> darken (d) -> shot + read noise -> quantisation noise
    -> white balance (r, 1, b) -> camera->RGB -> gamma (1/g)

No tone map is re-applied at the end: the output is deliberately left in the
"un-tone-mapped" space, as in the reference degradation (spec §8, step 7).

Split of work:

* :func:`sample_darkisp_params` draws every per-image scalar/matrix on the host with
  a ``numpy.random.Generator`` (cheap: a few numbers per image).
* :func:`dark_isp` does the per-pixel math for the whole ``[N, 3, H, W]`` batch in one
  vectorised pass; per-image values broadcast as ``[N, 1, 1, 1]`` and the colour
  matrices are applied with one batched matmul over the channel dimension.

Clamping: only what finiteness needs. The input is clamped to [0, 1] before
``asin(1 - 2x)`` (NaN outside), and ``max(x, eps)`` precedes both fractional powers
(as the spec says). The output is not clipped: it can exceed 1 or be as small as
``eps ** (1 / g)``, exactly as the reference returns it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from dainet.jt import jt


@dataclass(frozen=True)
class DarkISPConfig:
    """The ``darkisp`` params section (spec §8); ranges are ``(low, high)``."""
    gamma: tuple[float, float]
    red_gain: tuple[float, float]
    blue_gain: tuple[float, float]
    wb_scale_mean: float
    wb_scale_std: float
    darkness_mean: float
    darkness_std: float
    darkness_range: tuple[float, float]
    shot_noise: tuple[float, float]          # sampled log-uniformly
    read_noise_slope: float                  # log read = slope * log shot + intercept + N(0, std)
    read_noise_intercept: float
    read_noise_std: float
    quant_bits: tuple[int, ...]
    xyz2cams: np.ndarray                     # [M, 3, 3] XYZ -> camera, rows as listed
    rgb2xyz: np.ndarray                      # [3, 3] sRGB -> XYZ
    eps: float                               # floor before fractional powers and sqrt


def rgb_to_camera_matrices(xyz2cams: np.ndarray, rgb2xyz: np.ndarray) -> np.ndarray:
    """[M, 3, 3] sRGB -> camera matrices ``xyz2cam @ rgb2xyz``, each row scaled to sum 1.

    Row-normalising keeps grey grey: (v, v, v) maps to (v, v, v).
    """
    rgb2cam = xyz2cams @ rgb2xyz
    return rgb2cam / rgb2cam.sum(axis=-1, keepdims=True)


def sample_darkisp_params(n: int, rng: np.random.Generator, cfg: DarkISPConfig) -> dict[str, np.ndarray]:
    """Draw fresh degradation parameters for ``n`` images on the host.

    Returns float32 arrays of shape ``[n]`` (``gamma``, ``red_gain``, ``blue_gain``,
    ``wb_scale``, ``darkness``, ``shot_noise``, ``read_noise``, ``quant_bits``),
    and ``rgb2cam`` / ``cam2rgb`` float32 ``[n, 3, 3]`` (of one of ``cfg.xyz2cams`` per image).

    The darkness is a normal(mean, std) truncated to ``darkness_range`` by inverse CDF
    (``scipy.stats.truncnorm``), as in the reference, not clipped: clipping would pile
    probability mass on the bounds.
    """
    lo_d, hi_d = cfg.darkness_range
    mu, sigma = cfg.darkness_mean, cfg.darkness_std
    darkness = stats.truncnorm.rvs((lo_d - mu) / sigma, (hi_d - mu) / sigma, loc=mu, scale=sigma,
                                   size=n, random_state=rng)
    log_shot = rng.uniform(np.log(cfg.shot_noise[0]), np.log(cfg.shot_noise[1]), size=n)
    log_read = (cfg.read_noise_slope * log_shot + cfg.read_noise_intercept
                + rng.normal(0.0, cfg.read_noise_std, size=n))
    camera_index = rng.integers(len(cfg.xyz2cams), size=n)
    rgb2cam = rgb_to_camera_matrices(cfg.xyz2cams, cfg.rgb2xyz)[camera_index]
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    return {
        "gamma": f32(rng.uniform(*cfg.gamma, size=n)),
        "rgb2cam": f32(rgb2cam),
        "cam2rgb": f32(np.linalg.inv(rgb2cam)),  # inverted in float64 before the cast
        "red_gain": f32(rng.uniform(*cfg.red_gain, size=n)),
        "blue_gain": f32(rng.uniform(*cfg.blue_gain, size=n)),
        "wb_scale": f32(rng.normal(cfg.wb_scale_mean, cfg.wb_scale_std, size=n)),
        "darkness": f32(darkness),
        "shot_noise": f32(np.exp(log_shot)),
        "read_noise": f32(np.exp(log_read)),
        "quant_bits": f32(rng.choice(np.asarray(cfg.quant_bits), size=n)),
    }


# --- the image steps; x is [N, 3, H, W], per-image values are [N] or [N, 3(, 3)] ---------

def _per_image(v) -> jt.Var:
    """[N] host or Jittor values -> [N, 1, 1, 1] for broadcasting over C, H, W."""
    v = v if isinstance(v, jt.Var) else jt.array(np.asarray(v, dtype=np.float32))
    return v.reshape((-1, 1, 1, 1))


def inverse_tone_map(x: jt.Var) -> jt.Var:
    """0.5 - sin(asin(1 - 2x) / 3), the inverse of the smoothstep tone curve 3x^2 - 2x^3;
    x clamped to [0, 1] first (asin is NaN outside)."""
    return 0.5 - jt.sin(jt.asin(1.0 - 2.0 * x.clamp(0.0, 1.0)) / 3.0)


def gamma_expand(x: jt.Var, gamma, eps: float) -> jt.Var:
    """Inverse gamma: max(x, eps) ** g, g per image [N]."""
    return jt.maximum(x, eps) ** _per_image(gamma)


def gamma_compress(x: jt.Var, gamma, eps: float) -> jt.Var:
    """Gamma: max(x, eps) ** (1 / g), g per image [N]."""
    return jt.maximum(x, eps) ** (1.0 / _per_image(gamma))


def apply_ccm(x: jt.Var, ccm) -> jt.Var:
    """Per-image colour matrix: out[n, i] = sum_j ccm[n, i, j] * x[n, j] (``pixel @ ccm.T``).

    ccm is [N, 3, 3]; one batched matmul over the flattened pixels.
    """
    ccm = ccm if isinstance(ccm, jt.Var) else jt.array(np.asarray(ccm, dtype=np.float32))
    n, c, h, w = x.shape
    return jt.matmul(ccm, x.reshape((n, c, h * w))).reshape((n, c, h, w))


def apply_gains(x: jt.Var, gains) -> jt.Var:
    """Per-image, per-channel gains [N, 3]."""
    gains = gains if isinstance(gains, jt.Var) else jt.array(np.asarray(gains, dtype=np.float32))
    return x * gains.reshape((-1, 3, 1, 1))


def white_balance_gains(red_gain: np.ndarray, blue_gain: np.ndarray) -> np.ndarray:
    """[N, 3] camera white balance (r, 1, b); the inverse step uses k / these."""
    return np.stack([red_gain, np.ones_like(red_gain), blue_gain], axis=1).astype(np.float32)


def add_sensor_noise(x: jt.Var, shot, read, standard_normal: jt.Var, eps: float) -> jt.Var:
    """Heteroscedastic Gaussian noise, variance ``x * shot + read`` (floored at eps)."""
    var = jt.maximum(x * _per_image(shot) + _per_image(read), eps)
    return x + standard_normal * jt.sqrt(var)


def add_quantisation_noise(x: jt.Var, bits, uniform01: jt.Var) -> jt.Var:
    """Add U(-1/(255 q), 1/(255 q)) per pixel; ``uniform01`` is U(0, 1) noise of x's shape."""
    return x + (2.0 * uniform01 - 1.0) / (255.0 * _per_image(bits))


def seeded_noise(shape, seed: int) -> tuple[jt.Var, jt.Var]:
    """(standard normal, U(0, 1)) Vars of ``shape``, identical for identical seeds.

    Jittor has one global generator, drawn from when a random op *executes*, so the
    seed is set right before the draws and each draw is synced at once; a later
    ``set_seed`` cannot then slip in before them. This re-seeds Jittor's global
    generator as a side effect (nothing else in training draws from it).
    """
    jt.set_seed(int(seed))
    normal = jt.randn(*shape).stop_grad()
    normal.sync()
    uniform = jt.rand(*shape).stop_grad()
    uniform.sync()
    return normal, uniform


def dark_isp(images: jt.Var, params: dict[str, np.ndarray], seed: int,
             eps: float = 1e-8) -> jt.Var:
    """Darken a clean batch: ``images`` [N, 3, H, W] RGB in [0, 1] -> dark [N, 3, H, W].

    ``params`` comes from :func:`sample_darkisp_params` (values for N images);
    ``seed`` fixes the per-pixel noise. Returns the dark batch (no gradient).
    """
    n = images.shape[0]
    bad = [k for k in ("gamma", "darkness", "red_gain", "blue_gain") if len(params[k]) != n]
    if bad:
        raise ValueError(f"dark_isp: params {bad} are not for {n} images")
    wb = white_balance_gains(params["red_gain"], params["blue_gain"])
    normal, uniform = seeded_noise(images.shape, seed)
    g = params["gamma"]
    with jt.no_grad():
        x = gamma_expand(inverse_tone_map(images), g, eps)
        x = apply_ccm(x, params["rgb2cam"])
        x = apply_gains(x, params["wb_scale"][:, None] / wb)
        x = x * _per_image(params["darkness"])
        x = add_sensor_noise(x, params["shot_noise"], params["read_noise"], normal, eps)
        x = add_quantisation_noise(x, params["quant_bits"], uniform)
        x = apply_gains(x, wb)
        x = apply_ccm(x, params["cam2rgb"])
        x = gamma_compress(x, g, eps)
    return x.stop_grad()


def darken_batch(images: jt.Var, rng: np.random.Generator,
                 cfg: DarkISPConfig) -> tuple[jt.Var, dict[str, np.ndarray]]:
    """Draw fresh parameters and a noise seed from ``rng`` and apply :func:`dark_isp`:
    ``(dark batch, the drawn parameters)``."""
    params = sample_darkisp_params(images.shape[0], rng, cfg)
    seed = int(rng.integers(2 ** 31 - 1))  # Jittor seeds are C ints
    return dark_isp(images, params, seed, cfg.eps), params
