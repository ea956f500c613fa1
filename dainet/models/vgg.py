"""VGG16 "reduced fc" backbone (SSD style) as a flat layer list built from a cfg list (spec §2).

The list index of every layer is its published name: ``vgg.<i>.weight``.
"""
from __future__ import annotations

from dainet.jt import jt, nn

from dainet.models.config import POOL, POOL_CEIL
from dainet.models.kernels import max_pool2x2
from dainet.models.layers import conv2d


class MaxPool2x2(nn.Module):
    """2x2 max-pool, stride 2, with PyTorch's output sizes and gradient for any input size.

    The backward sends each window's gradient to ONE element, the first maximum in
    row-major order, as PyTorch's ``nn.MaxPool2d`` does (a reduce-max would send it to
    every tied element: up to 4x per level in flat regions, compounding over the pools).
    Jittor's ``Pool`` has that backward but refuses inputs no larger than the kernel (a
    2x2 map, which PyTorch pools to 1x1; it happens at the last pool for small test-time
    shrinks), so the input is first cut or ``-inf``-padded to exactly the windows PyTorch
    forms, plus a ``-inf`` row / column where a side is 2 (which never wins a window).
    ``ceil_mode`` keeps a last, partial window (the image side is odd). On the CPU all of
    this is one 2-thread kernel, :func:`dainet.models.kernels.max_pool2x2`.
    """

    def __init__(self, ceil_mode: bool = False):
        self.ceil_mode = ceil_mode
        self._pool = nn.Pool(2, stride=2, op="maximum")

    def execute(self, x: jt.Var) -> jt.Var:
        n, c, h, w = x.shape
        if self.ceil_mode:
            oh, ow = (h + 1) // 2, (w + 1) // 2
        else:
            oh, ow = h // 2, w // 2
        if not jt.flags.use_cuda:
            return max_pool2x2(x, oh, ow)
        if (2 * oh, 2 * ow) != (h, w):  # PyTorch drops the last odd row / column (floor mode)
            x = x[:, :, :min(h, 2 * oh), :min(w, 2 * ow)]
        th, tw = 2 * oh + (oh == 1), 2 * ow + (ow == 1)
        if (th, tw) != tuple(x.shape[2:]):  # partial windows (ceil) and Jittor's minimum size
            x = x.reindex([n, c, th, tw], ["i0", "i1", "i2", "i3"], overflow_value=-float("inf"))
        return self._pool(x)

    def extra_repr(self) -> str:
        return f"ceil_mode={self.ceil_mode}"


def vgg_layers(cfg: list, fc_channels: int, fc_dilation: int, in_channels: int = 3, norm: str = "none",
               group_size: int = 8) -> list[nn.Module]:
    """The backbone layer list: cfg convs (3x3 pad 1, ReLU) and pools, then conv6 / conv7.

    ``cfg`` holds conv widths and ``'M'`` (pool) / ``'C'`` (pool, ceil_mode); conv6 is the
    reduced fc6 (3x3, dilation ``fc_dilation``), conv7 the reduced fc7 (1x1), each + ReLU.
    With the paper cfg the list has 35 entries, convs at 0, 2, 5, ..., 31, 33. ``norm``
    (``model.norm``, not in the paper) puts a BatchNorm / GroupNorm inside each conv entry.
    """
    layers: list[nn.Module] = []
    cin = in_channels
    for v in cfg:
        if v == POOL:
            layers.append(MaxPool2x2(ceil_mode=False))
        elif v == POOL_CEIL:
            layers.append(MaxPool2x2(ceil_mode=True))
        else:
            layers += [conv2d(cin, v, 3, padding=1, norm=norm, group_size=group_size), nn.ReLU()]
            cin = v
    layers += [conv2d(cin, fc_channels, 3, padding=fc_dilation, dilation=fc_dilation, norm=norm,
                      group_size=group_size), nn.ReLU(),
               conv2d(fc_channels, fc_channels, 1, norm=norm, group_size=group_size), nn.ReLU()]
    return layers


def extra_layers(extras_cfg: list, in_channels: int, norm: str = "none", group_size: int = 8) -> list[nn.Module]:
    """Extras on top of fc7: pairs of (1x1 conv, 3x3 stride-2 pad-1 conv); ReLU is applied in the forward."""
    layers: list[nn.Module] = []
    cin = in_channels
    for k, v in enumerate(extras_cfg):
        layers.append(conv2d(cin, v, 1, norm=norm, group_size=group_size) if k % 2 == 0 else
                      conv2d(cin, v, 3, stride=2, padding=1, norm=norm, group_size=group_size))
        cin = v
    return layers
