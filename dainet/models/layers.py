"""Small building blocks of DSFD / DAI-Net: L2Norm, FEM, the multiplicative FPN step (spec §2, §3)."""
from __future__ import annotations

import jittor as jt
from jittor import nn


class L2Norm(nn.Module):
    """Per-position L2 normalisation over channels times a learned per-channel weight.

    ``y = weight[c] * x / (sqrt(sum_c x^2) + eps)``; ``weight`` starts at ``scale``.
    Its only parameter is ``weight`` [C] (the published ``L2Norm*.weight``).
    """

    def __init__(self, channels: int, scale: float, eps: float = 1e-10):
        self.scale = float(scale)
        self.eps = float(eps)
        self.weight = jt.full((channels,), self.scale, dtype="float32")

    def execute(self, x: jt.Var) -> jt.Var:
        sq = x.sqr().sum(dim=1, keepdims=True)
        # sqrt has an infinite slope at 0, which turns the (zero) gradient at an all-zero
        # position into NaN; flooring the sum at eps^2 changes no output (x = 0 there).
        norm = jt.sqrt(jt.maximum(sq, self.eps * self.eps)) + self.eps
        return x / norm * self.weight.reshape(1, -1, 1, 1)


def _dilated_conv(cin: int, cout: int, dilation: int) -> nn.Conv2d:
    """3x3 conv keeping the spatial size (padding = dilation)."""
    return nn.Conv2d(cin, cout, 3, stride=1, padding=dilation, dilation=dilation)


class FEM(nn.Module):
    """Feature enhance module: three dilated-conv branches of depth 1, 2, 3, concatenated, ReLU.

    For C input channels the branches give a = C // 3, a and b = C - 2a channels, so the
    output has C channels again. Names: ``branch1.*``, ``branch2.<0|2>.*``, ``branch3.<0|2|4>.*``.
    """

    def __init__(self, channels: int, dilation: int = 3):
        a = channels // 3
        b = channels - 2 * a
        self.branch1 = _dilated_conv(channels, a, dilation)
        self.branch2 = nn.Sequential(_dilated_conv(channels, a, dilation), nn.ReLU(),
                                     _dilated_conv(a, a, dilation))
        self.branch3 = nn.Sequential(_dilated_conv(channels, b, dilation), nn.ReLU(),
                                     _dilated_conv(b, b, dilation), nn.ReLU(),
                                     _dilated_conv(b, b, dilation))

    def execute(self, x: jt.Var) -> jt.Var:
        return nn.relu(jt.concat([self.branch1(x), self.branch2(x), self.branch3(x)], dim=1))


def bilinear_resize(x: jt.Var, size: tuple[int, int]) -> jt.Var:
    """Bilinear resize of [N, C, h, w] to [N, C, *size] with half-pixel centres.

    Same sampling as PyTorch's ``F.interpolate(mode='bilinear', align_corners=False)``,
    which the reference uses (tested against a numpy implementation of it).
    """
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return nn.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def upsample_product(x: jt.Var, y: jt.Var) -> jt.Var:
    """DSFD's top-down step: ``x`` resized to ``y``'s size, times ``y`` (a product, not a sum)."""
    return bilinear_resize(x, y.shape[2:]) * y
