"""Small building blocks of DSFD / DAI-Net: convs (optionally normalised), L2Norm, FEM, the FPN step (spec §2, §3)."""
from __future__ import annotations

from dainet.jt import jt, nn

from dainet.models.kernels import bias_relu, replicate_pad


def norm_groups(channels: int, group_size: int) -> int:
    """The most groups of at least ``group_size`` channels that divide ``channels`` (>= 1).

    Width multipliers and FEM's C // 3 split give channel counts such as 21 or 85, which
    a fixed group count (GroupNorm's usual 32) would not divide.
    """
    best = 1
    for g in range(1, channels + 1):
        if channels % g == 0 and channels // g >= group_size:
            best = g
    return best


class NormConv2d(nn.Conv2d):
    """A Conv2d followed by BatchNorm or GroupNorm (``norm``), for training from scratch.

    Not in the paper (spec §14): the embedded sample's from-scratch profile sets
    ``model.norm``. The conv keeps its published name (``<name>.weight|bias``) and the norm
    adds ``<name>.norm.*``, so layer indices and every other name are unchanged.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, dilation: int = 1, norm: str = "batch", group_size: int = 8):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation)
        if norm == "batch":
            self.norm = nn.BatchNorm(out_channels)
        elif norm == "group":
            self.norm = nn.GroupNorm(norm_groups(out_channels, group_size), out_channels)
        else:
            raise ValueError(f"norm must be batch or group, got {norm!r}")

    def execute(self, x: jt.Var) -> jt.Var:
        return self.norm(super().execute(x))


class ReplicatePadConv2d(nn.Conv2d):
    """Conv2d with replicate ("edge") padding; Jittor's Conv2d has no ``padding_mode``.

    Subclassing keeps ``weight`` / ``bias`` directly on the module, so the layer's
    parameter names are those of a PyTorch ``Conv2d(padding_mode='replicate')``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__(in_channels, out_channels, kernel_size, padding=0)
        self.pad = kernel_size // 2

    def execute(self, x: jt.Var) -> jt.Var:
        return super().execute(replicate_pad(x, self.pad))


def conv_relu(conv: nn.Conv2d, x: jt.Var) -> jt.Var:
    """``relu(conv(x))``. Without a norm and with a bias, on the CPU, the bias add and the ReLU
    are one 2-thread kernel (:func:`dainet.models.kernels.bias_relu`; same values and gradients
    to the bit); otherwise the layers run one after the other."""
    if jt.flags.use_cuda or conv.bias is None or isinstance(conv, NormConv2d):
        return nn.relu(conv(x))
    if isinstance(conv, ReplicatePadConv2d):
        x = replicate_pad(x, conv.pad)
    return bias_relu(nn.conv2d(x, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups),
                     conv.bias)


def run_layers(layers, x: jt.Var) -> jt.Var:
    """Apply ``layers`` (a list or ``nn.Sequential``) in order; a conv directly followed by
    ``nn.ReLU`` runs as :func:`conv_relu`."""
    layers = list(layers)
    i = 0
    while i < len(layers):
        if isinstance(layers[i], nn.Conv2d) and i + 1 < len(layers) and isinstance(layers[i + 1], nn.ReLU):
            x, i = conv_relu(layers[i], x), i + 2
        else:
            x, i = layers[i](x), i + 1
    return x


def conv2d(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
           dilation: int = 1, norm: str = "none", group_size: int = 8) -> nn.Conv2d:
    """``nn.Conv2d`` (``norm: none``, the paper) or :class:`NormConv2d` (``batch`` | ``group``)."""
    if norm == "none":
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation)
    return NormConv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, norm, group_size)


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


def _dilated_conv(cin: int, cout: int, dilation: int, norm: str = "none", group_size: int = 8) -> nn.Conv2d:
    """3x3 conv keeping the spatial size (padding = dilation)."""
    return conv2d(cin, cout, 3, stride=1, padding=dilation, dilation=dilation, norm=norm, group_size=group_size)


class FEM(nn.Module):
    """Feature enhance module: three dilated-conv branches of depth 1, 2, 3, concatenated, ReLU.

    For C input channels the branches give a = C // 3, a and b = C - 2a channels, so the
    output has C channels again. Names: ``branch1.*``, ``branch2.<0|2>.*``, ``branch3.<0|2|4>.*``.
    """

    def __init__(self, channels: int, dilation: int = 3, norm: str = "none", group_size: int = 8):
        a = channels // 3
        b = channels - 2 * a

        def conv(cin, cout):
            return _dilated_conv(cin, cout, dilation, norm, group_size)
        self.branch1 = conv(channels, a)
        self.branch2 = nn.Sequential(conv(channels, a), nn.ReLU(), conv(a, a))
        self.branch3 = nn.Sequential(conv(channels, b), nn.ReLU(), conv(b, b), nn.ReLU(), conv(b, b))

    def execute(self, x: jt.Var) -> jt.Var:
        return nn.relu(jt.concat([self.branch1(x), run_layers(self.branch2, x), run_layers(self.branch3, x)], dim=1))


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
