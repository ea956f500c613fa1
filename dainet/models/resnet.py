"""ResNet-50/101/152 backbone of DSFD (the published ``models/DSFD_resnet.py``; torchvision's layout).

Names are torchvision's and the published network's below ``resnet.``: ``conv1``, ``bn1``,
``layer<s>.<b>.conv<1|2|3>``, ``layer<s>.<b>.bn<1|2|3>``, ``layer<s>.0.downsample.<0|1>``
(no ``fc``). Bottleneck blocks put the stride on their 3x3 conv (torchvision's "v1.5"), every
conv is bias-free and followed by a :class:`BatchNorm2d`.

Shapes: image [N, 3, H, W] -> stem [N, 64w, H1, W1] (conv1, bn1, ReLU; ``H1 = floor((H-1)/2)+1``)
-> max-pool 3x3/2 pad 1 -> layer1..layer4 [N, 256w | 512w | 1024w | 2048w, ...] at strides 4, 8,
16, 32 (each halving ``n -> floor((n-1)/2)+1``), ``w`` the width multiplier.
"""
from __future__ import annotations

from dainet.jt import jt, nn

from dainet.models.config import RESNET_BLOCKS, RESNET_EXPANSION, RESNET_PLANES, RESNET_STEM
from dainet.utils.numerics import mean64


class BatchNorm2d(nn.Module):
    """PyTorch's ``nn.BatchNorm2d`` (eps 1e-5, momentum 0.1) for the ResNet backbone.

    Training normalises by the batch mean and biased variance (two-pass, accumulated in float64:
    float32 sums over the N*H*W values of a channel put the gradients of the parity test 2-4e-3
    off the reference's, against 1e-3 allowed) and moves the running
    statistics towards the batch mean and the UNBIASED variance (``* n / (n - 1)``), as PyTorch
    does; Jittor's ``nn.BatchNorm`` tracks the biased one and computes ``E[x^2] - E[x]^2``.
    Evaluation uses the running statistics. Names: ``weight``, ``bias``, ``running_mean``,
    ``running_var`` (PyTorch's ``num_batches_tracked`` is not kept: with a momentum it is unused).
    """

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1):
        self.eps = eps
        self.momentum = momentum
        self.weight = jt.ones((channels,), dtype="float32")
        self.bias = jt.zeros((channels,), dtype="float32")
        self.running_mean = jt.zeros((channels,), dtype="float32").stop_grad()
        self.running_var = jt.ones((channels,), dtype="float32").stop_grad()

    def execute(self, x: jt.Var) -> jt.Var:
        if self.is_training():
            mean = mean64(x, dims=(0, 2, 3), keepdims=True)
            centred = x - mean
            var = mean64(centred.sqr(), dims=(0, 2, 3), keepdims=True)
            count = x.numel() // x.shape[1]
            m = self.momentum
            self.running_mean.update((self.running_mean * (1 - m) + mean.reshape(-1).detach() * m).stop_grad())
            unbiased = var.reshape(-1).detach() * (count / max(count - 1, 1))
            self.running_var.update((self.running_var * (1 - m) + unbiased * m).stop_grad())
            scale = self.weight.reshape(1, -1, 1, 1) / jt.sqrt(var + self.eps)
            return centred * scale + self.bias.reshape(1, -1, 1, 1)
        scale = self.weight / jt.sqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)


class MaxPool3x3s2(nn.Module):
    """3x3 max-pool, stride 2, padding 1, with PyTorch's output size ``floor((n-1)/2)+1`` for any
    input (Jittor's ``Pool`` refuses inputs no larger than the kernel): the input is ``-inf``-padded
    to exactly the windows PyTorch forms (plus a ``-inf`` row / column where a single window would
    leave a 3-px side), then pooled without padding. The backward sends each window's gradient to
    one element, the first maximum, as PyTorch does."""

    def __init__(self):
        self._pool = nn.Pool(3, stride=2, op="maximum")

    def execute(self, x: jt.Var) -> jt.Var:
        n, c, h, w = x.shape
        oh, ow = (h - 1) // 2 + 1, (w - 1) // 2 + 1
        th, tw = 2 * oh + 1 + (oh == 1), 2 * ow + 1 + (ow == 1)
        x = x.reindex([n, c, th, tw], ["i0", "i1", "i2-1", "i3-1"], overflow_value=-float("inf"))
        return self._pool(x)


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 (x4 channels), each with BatchNorm, plus the shortcut, ReLU."""

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: bool = False):
        cout = planes * RESNET_EXPANSION
        self.conv1, self.bn1 = _conv(cin, planes, 1), BatchNorm2d(planes)
        self.conv2, self.bn2 = _conv(planes, planes, 3, stride), BatchNorm2d(planes)
        self.conv3, self.bn3 = _conv(planes, cout, 1), BatchNorm2d(cout)
        self.downsample = nn.Sequential(_conv(cin, cout, 1, stride), BatchNorm2d(cout)) if downsample else None

    def execute(self, x: jt.Var) -> jt.Var:
        out = nn.relu(self.bn1(self.conv1(x)))
        out = nn.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return nn.relu(out + (self.downsample(x) if self.downsample is not None else x))


class ResNet(nn.Module):
    """``depth`` (``resnet50`` | ``resnet101`` | ``resnet152``) with channel counts from ``ch``
    (a paper count -> the scaled count, :meth:`dainet.models.config.ModelConfig.ch`)."""

    def __init__(self, depth: str, ch=lambda c: c):
        stem = ch(RESNET_STEM)
        self.conv1 = nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = BatchNorm2d(stem)
        self.maxpool = MaxPool3x3s2()
        cin = stem
        for s, (blocks, planes) in enumerate(zip(RESNET_BLOCKS[depth], RESNET_PLANES)):
            planes = ch(planes)
            stride = 1 if s == 0 else 2
            layer = [Bottleneck(cin, planes, stride, downsample=stride != 1 or cin != planes * RESNET_EXPANSION)]
            cin = planes * RESNET_EXPANSION
            layer += [Bottleneck(cin, planes) for _ in range(1, blocks)]
            setattr(self, f"layer{s + 1}", nn.Sequential(*layer))

    def stem(self, x: jt.Var) -> jt.Var:
        """conv1, bn1, ReLU: [N, 64w, H1, W1] at stride 2 (the counterpart of VGG's x_shallow)."""
        return nn.relu(self.bn1(self.conv1(x)))

    def stages(self, x_stem: jt.Var) -> list[jt.Var]:
        """The max-pool and layer1..layer4 from the stem's output: of1..of4 (strides 4..32)."""
        x = self.maxpool(x_stem)
        out = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            out.append(x)
        return out

    def execute(self, x: jt.Var) -> list[jt.Var]:
        return self.stages(self.stem(x))
