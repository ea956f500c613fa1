"""Retinex decomposition network (spec §6): image -> reflectance R [N, 3, H, W], illumination I [N, 1, H, W].

Frozen during DAI-Net training; it supplies the pseudo ground truth R_*_gt and the
illumination maps I_* of the interchange. Parameter names follow the published
``decomp.pth``: ``DecomNet.net1_conv0.*``, ``DecomNet.net1_convs.<0|2|4|6|8>.*``,
``DecomNet.net1_recon.*``.
"""
from __future__ import annotations

from dainet.jt import jt, nn

from dainet.models.config import ModelConfig
from dainet.models.layers import ReplicatePadConv2d, run_layers


class DecomNet(nn.Module):
    """concat(channel-max, RGB) -> conv0 (no activation) -> ``layers`` x (conv, ReLU) -> recon conv."""

    def __init__(self, channels: int, first_kernel: int, layers: int, kernel: int = 3):
        self.net1_conv0 = ReplicatePadConv2d(4, channels, first_kernel)
        convs = []
        for _ in range(layers):
            convs += [ReplicatePadConv2d(channels, channels, kernel), nn.ReLU()]
        self.net1_convs = nn.Sequential(*convs)
        self.net1_recon = ReplicatePadConv2d(channels, 4, kernel)

    def execute(self, image: jt.Var) -> tuple[jt.Var, jt.Var]:
        x = jt.concat([image.max(dim=1, keepdims=True), image], dim=1)
        out = self.net1_recon(run_layers(self.net1_convs, self.net1_conv0(x)))
        return jt.sigmoid(out[:, :3]), jt.sigmoid(out[:, 3:4])


class RetinexDecomposer(nn.Module):
    """Wrapper whose attribute name gives the published ``DecomNet.`` prefix.

    ``execute(image [N, 3, H, W] in [0, 1])`` -> ``(R [N, 3, H, W], I [N, 1, H, W])``.
    """

    def __init__(self, channels: int, first_kernel: int, layers: int):
        self.DecomNet = DecomNet(channels, first_kernel, layers)

    def execute(self, image: jt.Var) -> tuple[jt.Var, jt.Var]:
        return self.DecomNet(image)


def build_decomposer(model_section) -> RetinexDecomposer:
    """The decomposition network from the params `model` section (or a :class:`ModelConfig`).

    It is not scaled by ``model.width``: it is a separate network whose published
    weights (``decomp.pth``, 64 channels) serve any detector width.
    """
    cfg = model_section if isinstance(model_section, ModelConfig) else model_section.load(ModelConfig)
    return RetinexDecomposer(cfg.decomp_channels, cfg.decomp_kernel, cfg.decomp_layers)
