"""Seeded initialisation (spec §9): every conv Xavier-uniform with zero bias, L2Norm weights constant.

The backbone is initialised too; the convert stage overwrites ``vgg.*`` afterwards when
converted vgg16_reducedfc weights are given. Without them (the embedded sample), the
spec says nothing about the backbone: Xavier there shrinks activations by about half per
ReLU layer, so ``backbone="kaiming"`` (He-normal, fan-out, as torchvision's VGG) keeps
the backbone's scale (of1..of3 RMS about 0.1 at 192 px). It does not save the second
shot: DSFD's top-down path multiplies feature maps, so the FEM outputs still start near
1e-9 before their L2Norm (measured at 192 px), which amplifies them and their gradients by
about 1e9 (the clipped first step is spent on FEM biases). Pretrained VGG features are
large enough that this does not happen. Values are drawn with numpy from ``seed``, so they
are identical on CPU and GPU and across Jittor versions.
"""
from __future__ import annotations

import math

import numpy as np

from dainet.jt import jt, nn

from dainet.models.layers import L2Norm
from dainet.models.resnet import Bottleneck


def xavier_uniform(shape: tuple, rng: np.random.Generator, gain: float = 1.0) -> np.ndarray:
    """Glorot uniform for a conv weight [out, in, kh, kw]: U(-a, a), a = gain*sqrt(6/(fan_in+fan_out))."""
    receptive = int(np.prod(shape[2:]))
    bound = gain * math.sqrt(6.0 / (shape[1] * receptive + shape[0] * receptive))
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


def kaiming_normal_fan_out(shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """He normal for ReLU networks, fan-out mode: N(0, 2 / (out * kh * kw))."""
    std = math.sqrt(2.0 / (shape[0] * int(np.prod(shape[2:]))))
    return (rng.standard_normal(size=shape) * std).astype(np.float32)


BACKBONE = ("vgg", "resnet")                                  # model.backbone vgg | resnet*
NECK = ("extras", "fpn_topdown", "fpn_latlayer", "fpn_fem")  # between the backbone and the heads


def init_weights(net: nn.Module, seed: int, backbone: str = "xavier", neck: str = "xavier",
                 zero_residual: bool = False) -> nn.Module:
    """Initialise ``net`` in place (and return it): deterministic under ``seed``.

    Convs in module order get Xavier-uniform weights and zero biases (``backbone:
    kaiming`` gives the backbone's (``vgg`` or ``resnet``) convs He-normal instead, as
    torchvision initialises its ResNets, params ``convert.backbone_init``;
    ``neck: kaiming`` the same for extras, FPN and FEM, ``convert.neck_init``: from scratch
    their ReLU products otherwise start near 1e-3 even on a normalised backbone);
    every L2Norm gets its construction-time scale (params ``model.l2norm_scales``); BatchNorm
    layers keep their construction-time weight 1 and bias 0, except, with ``zero_residual``
    (params ``convert.zero_init_residual``; torchvision's ``zero_init_residual``, Goyal et al.
    2017), the last BatchNorm of each ResNet bottleneck (``bn3``), whose weight starts at 0 so
    every block starts as its shortcut. No effect on a VGG.
    """
    for what, value in (("backbone", backbone), ("neck", neck)):
        if value not in ("xavier", "kaiming"):
            raise ValueError(f"{what} init must be xavier or kaiming, got {value!r}")
    rng = np.random.default_rng(seed)
    he = {id(m) for name in BACKBONE if hasattr(net, name) for m in getattr(net, name).modules()} \
        if backbone == "kaiming" else set()
    if neck == "kaiming":
        he |= {id(m) for name in NECK if hasattr(net, name) for m in getattr(net, name).modules()}
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            draw = kaiming_normal_fan_out if id(module) in he else xavier_uniform
            module.weight.assign(jt.array(draw(tuple(module.weight.shape), rng)))
            if module.bias is not None:
                module.bias.assign(jt.zeros(module.bias.shape, dtype="float32"))
        elif isinstance(module, L2Norm):
            module.weight.assign(jt.full(module.weight.shape, module.scale, dtype="float32"))
        elif zero_residual and isinstance(module, Bottleneck):
            module.bn3.weight.assign(jt.zeros(module.bn3.weight.shape, dtype="float32"))
    return net
