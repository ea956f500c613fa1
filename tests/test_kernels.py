"""The 2-thread CPU kernels give Jittor's own values and gradients bit for bit (or PyTorch's, for the pool)."""
import numpy as np
import pytest

import dainet.jt  # noqa: F401  (configures Jittor before it loads)
import jittor as jt
from jittor import nn

from dainet.models import layers
from dainet.models.kernels import bias_relu, max_pool2x2, replicate_pad, upsample_nearest2x
from dainet.models.layers import NormConv2d, ReplicatePadConv2d, conv_relu, run_layers


def _value_and_grad(f, x: np.ndarray, up_seed: int = 7):
    xv = jt.array(x)
    y = f(xv)
    up = np.random.default_rng(up_seed).standard_normal(y.shape).astype(np.float32)
    g = jt.grad((y * jt.array(up)).sum(), xv)
    return y.numpy(), g.numpy()


@pytest.mark.parametrize("shape, pad", [((2, 3, 9, 7), 4), ((1, 2, 5, 6), 1), ((1, 1, 2, 3), 4), ((1, 4, 1, 1), 2)])
def test_replicate_pad_equals_jittor_pad_bit_for_bit(shape, pad):
    """Values and the summed edge gradients, with pads wider than the image."""
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    got = _value_and_grad(lambda v: replicate_pad(v, pad), x)
    ref = _value_and_grad(lambda v: nn.pad(v, (pad,) * 4, mode="replicate"), x)
    assert got[0].shape == (shape[0], shape[1], shape[2] + 2 * pad, shape[3] + 2 * pad)
    np.testing.assert_array_equal(got[0], np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="edge"))
    np.testing.assert_array_equal(got[1], ref[1])
    # the corner pixel gathers the upstream gradient of the output's (pad+1) x (pad+1) corner block
    if shape[2] > 1 and shape[3] > 1:
        up = np.random.default_rng(7).standard_normal(got[0].shape)
        assert got[1][0, 0, 0, 0] == pytest.approx(up[0, 0, :pad + 1, :pad + 1].sum(), rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("hw, out", [((8, 10), (4, 5)), ((7, 9), (4, 5)), ((7, 9), (3, 4)), ((2, 2), (1, 1)), ((1, 3), (1, 2))])
def test_max_pool2x2_equals_jittor_pool_where_jittor_pools(hw, out):
    """Against Jittor's own Pool on the windows it forms (-inf padded to whole windows)."""
    h, w = hw
    x = np.random.default_rng(2).integers(0, 3, size=(2, 3, h, w)).astype(np.float32)  # many ties
    th, tw = 2 * out[0], 2 * out[1]

    def jittor_pool(v):
        v = v[:, :, :min(h, th), :min(w, tw)].reindex([2, 3, th + 1, tw + 1], ["i0", "i1", "i2", "i3"],
                                                      overflow_value=-float("inf"))
        return nn.Pool(2, stride=2, op="maximum")(v)

    got = _value_and_grad(lambda v: max_pool2x2(v, *out), x)
    ref = _value_and_grad(jittor_pool, x)
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)


def test_max_pool2x2_refuses_an_output_larger_than_its_windows():
    with pytest.raises(ValueError, match="does not fit"):
        max_pool2x2(jt.zeros((1, 1, 4, 4)), 3, 2)


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 4, 1, 1), (3, 2, 8, 6)])
def test_upsample_nearest2x_equals_jittor_upsample_bit_for_bit(shape):
    """Each pixel to a 2x2 block; the gradient sums the block in Jittor's order, to the last bit."""
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    got = _value_and_grad(upsample_nearest2x, x)
    ref = _value_and_grad(nn.Upsample(scale_factor=2, mode="nearest"), x)
    np.testing.assert_array_equal(got[0], x.repeat(2, axis=2).repeat(2, axis=3))
    np.testing.assert_array_equal(got[1], ref[1])


@pytest.mark.parametrize("shape", [(2, 6, 9, 7), (1, 85, 17, 13), (3, 4, 1, 1), (2, 3, 161, 160)])
def test_bias_relu_equals_jittor_bias_add_and_relu_bit_for_bit(shape):
    """Values, the input's gradient and the bias gradient (a sum over 2 x 161 x 160 values in the
    largest case, where any other summation order shows in the last bits)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(np.float32)
    b = rng.standard_normal(shape[1]).astype(np.float32)
    x[0, 0, 0, 0] = -b[0]                       # x + b == 0 exactly: output 0, gradient 0
    up = rng.standard_normal(shape).astype(np.float32)

    def run(f):
        xv, bv = jt.array(x), jt.array(b)
        y = f(xv, bv)
        return [y.numpy()] + [g.numpy() for g in jt.grad((y * jt.array(up)).sum(), [xv, bv])]

    got = run(bias_relu)
    ref = run(lambda xv, bv: nn.relu(xv + bv.broadcast(xv.shape, [0, 2, 3])))
    np.testing.assert_array_equal(got[0], np.maximum(x + b[None, :, None, None], 0))
    assert got[0][0, 0, 0, 0] == 0 and got[1][0, 0, 0, 0] == 0
    for a, r in zip(got, ref):
        np.testing.assert_array_equal(a, r)


def test_run_layers_fuses_each_conv_relu_pair_and_keeps_every_bit(monkeypatch):
    """A conv followed by ReLU runs as conv + bias_relu; a conv with a norm, a conv without a
    ReLU and other layers run as they are; values and every gradient equal the plain layers'."""
    jt.set_global_seed(3)
    seq = nn.Sequential(ReplicatePadConv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=2, dilation=2), nn.ReLU(),
                        nn.Conv2d(8, 6, 1), NormConv2d(6, 6, 3, padding=1, norm="group", group_size=2), nn.ReLU(),
                        nn.Conv2d(6, 4, 3, stride=2, padding=1), nn.ReLU())
    fused = []
    monkeypatch.setattr(layers, "bias_relu", lambda x, b: fused.append(b) or bias_relu(x, b))
    x = np.random.default_rng(6).standard_normal((2, 3, 12, 10)).astype(np.float32)

    def run(f):
        xv = jt.array(x)
        y = f(xv)
        up = jt.array(np.random.default_rng(8).standard_normal(y.shape).astype(np.float32))
        params = [p for p in seq.parameters() if not p.is_stop_grad()]
        return [y.numpy()] + [g.numpy() for g in jt.grad((y * up).sum(), [xv] + params)]

    got = run(lambda v: run_layers(seq, v))
    assert [id(b) for b in fused] == [id(seq[0].bias), id(seq[2].bias), id(seq[7].bias)]
    ref = run(seq)
    assert len(got) == len(ref) == 1 + 1 + 2 * 5 + 2
    for a, r in zip(got, ref):
        np.testing.assert_array_equal(a, r)
    one = np.random.default_rng(9).standard_normal((1, 3, 5, 5)).astype(np.float32)
    np.testing.assert_array_equal(conv_relu(seq[0], jt.array(one)).numpy(), nn.relu(seq[0](jt.array(one))).numpy())
