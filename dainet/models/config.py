"""The network's architecture as data: the `model` section of params.yaml (spec §2, §3, §5, §6).

:class:`ModelConfig` holds the `model` section (``params.section("model").load(ModelConfig)``;
``params/wider.yaml`` holds the paper's numbers, the published network) plus a channel
multiplier ``width``. Every derived channel count goes through :meth:`ModelConfig.ch`,
so a small width gives a small but structurally identical network (same layers, same
strides, same prior count); ``width: 1.0`` is needed to load published weights.
"""
from __future__ import annotations

from dataclasses import dataclass

from dainet.params import ParamError

BACKBONES = ("vgg", "resnet50", "resnet101", "resnet152")  # model.backbone
# Bottleneck blocks per ResNet stage (layer1..layer4), as in the published DSFD_resnet.py
RESNET_BLOCKS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3), "resnet152": (3, 8, 36, 3)}
RESNET_STEM = 64                    # conv1 width
RESNET_PLANES = (64, 128, 256, 512)  # Bottleneck inner width per stage; outputs are 4x
RESNET_EXPANSION = 4
NORMS = ("none", "batch", "group")  # model.norm
NORM_SCOPES = ("backbone", "all")   # model.norm_scope

POOL = "M"        # max-pool 2x2 stride 2
POOL_CEIL = "C"   # the same with ceil_mode
STRIDED = "S"     # 3x3 conv, stride 2, padding 1 (the second conv of each extras pair)
_SOURCE_POOLS = (2, 3, 4)  # of1..of3 are the ReLU outputs right before the 3rd, 4th, 5th pool


@dataclass(frozen=True)
class BackboneTaps:
    """Inclusive end indices into the VGG layer list (spec §2)."""
    shallow: int                 # x_shallow = vgg[0..shallow]
    sources: tuple[int, ...]     # of1..of4 = outputs of vgg[..sources[k]]


@dataclass(frozen=True)
class ModelConfig:
    """Params section `model`. Per-key ranges are checked by the schema (:mod:`dainet.schema`)
    when loaded; ``__post_init__`` checks what needs several keys.

    ``backbone`` ``vgg`` (DAI-Net and DSFD, spec §2) reads ``vgg_cfg``, ``fc_*`` and
    ``l2norm_*``; a ResNet (DSFD only, the published ``DSFD_resnet.py``) reads none of them:
    its stages are :data:`RESNET_BLOCKS` and it has no L2Norm layers.
    """
    backbone: str                    # vgg | resnet50 | resnet101 | resnet152
    vgg_cfg: tuple[int | str, ...]   # conv widths and POOL / POOL_CEIL
    fc_channels: int
    fc_dilation: int
    extras_cfg: tuple[int, ...]
    l2norm_scales: tuple[float, ...]
    l2norm_eps: float
    fem_dilation: int
    num_classes: int
    ref_channels: int
    width: float
    decomp_channels: int
    decomp_kernel: int
    decomp_layers: int
    norm: str                     # none | batch | group inside every backbone/extras/FPN/FEM conv (not in the paper)
    norm_group_size: int          # GroupNorm: the most groups of at least this many channels
    norm_scope: str               # backbone (vgg convs only) | all (also extras, FPN, FEM)

    def __post_init__(self):
        pools = [i for i, v in enumerate(self.vgg_cfg) if v in (POOL, POOL_CEIL)]
        if len(pools) != 5 or any(self.vgg_cfg[p - 1] in (POOL, POOL_CEIL) for p in pools[2:]):
            raise ParamError("vgg_cfg: needs exactly 5 pools, each of the last three right after a conv "
                             f"(the of1..of3 taps), got {list(self.vgg_cfg)}")
        if isinstance(self.vgg_cfg[0], str):
            raise ParamError("vgg_cfg: must start with a conv")
        small = [c for c in self.source_channels if c < 3]
        if small:
            raise ParamError(f"width: {self.width} leaves a FEM input with fewer than 3 channels "
                             f"(sources {self.source_channels}); FEM splits C into C//3 + C//3 + rest")

    @property
    def resnet(self) -> bool:
        return self.backbone != "vgg"

    # -- derived channel counts --------------------------------------------------
    def ch(self, channels: int) -> int:
        """A paper channel count scaled by ``width`` (rounded, at least 1)."""
        return max(1, int(round(channels * self.width)))

    @property
    def vgg_layers(self) -> list:
        """``vgg_cfg`` with every conv width scaled."""
        return [v if isinstance(v, str) else self.ch(v) for v in self.vgg_cfg]

    @property
    def shallow_channels(self) -> int:
        """Channels of x_shallow (the conv before the first pool)."""
        first_pool = next(i for i, v in enumerate(self.vgg_cfg) if isinstance(v, str))
        return self.ch(self.vgg_cfg[first_pool - 1])

    @property
    def source_channels(self) -> list[int]:
        """Channels of of1..of6 (spec §3: [256, 512, 512, 1024, 512, 256] at width 1; a ResNet:
        [256, 512, 1024, 2048, 512, 256], its four stages' outputs then the extras)."""
        extras = [self.ch(self.extras_cfg[1]), self.ch(self.extras_cfg[3])]
        if self.resnet:
            return [RESNET_EXPANSION * self.ch(p) for p in RESNET_PLANES] + extras
        pools = [i for i, v in enumerate(self.vgg_cfg) if isinstance(v, str)]
        taps = [self.ch(self.vgg_cfg[pools[k] - 1]) for k in _SOURCE_POOLS]
        return taps + [self.ch(self.fc_channels)] + extras

    @property
    def taps(self) -> BackboneTaps:
        """Layer-list indices of x_shallow and of1..of4 (spec §2: 4 and 15, 22, 29, 34)."""
        index, pools = 0, []
        for v in self.vgg_cfg:
            if isinstance(v, str):
                pools.append(index)
                index += 1
            else:
                index += 2  # conv, ReLU
        last = index + 4 - 1  # conv6, ReLU, conv7, ReLU
        return BackboneTaps(shallow=pools[0], sources=tuple(pools[k] - 1 for k in _SOURCE_POOLS) + (last,))

    @property
    def level_downsampling(self) -> tuple[tuple[str, ...], ...]:
        """The size-changing ops before each of of1..of6, in order: the pools of ``vgg_cfg``
        (``M`` / ``C``) and one ``S`` per extras pair (spec §2: ``(M, M), (C,), (M,), (M,), (S,), (S,)``).
        A ResNet halves with ``S`` only: its 7x7 stride-2 pad-3 conv1 and 3x3 stride-2 pad-1
        max-pool give ``floor((n - 1) / 2) + 1`` as the extras do, and so does each stage's
        stride-2 3x3 conv: ``(S, S), (S,), (S,), (S,), (S,), (S,)``.

        3x3 pad-1 convs, conv6 (pad 3, dilation 3) and 1x1 convs keep the size; the priors
        (:class:`dainet.boxes.priors.PriorSpec`) derive the feature-map sizes from this.
        """
        extras = ((STRIDED,),) * (len(self.extras_cfg) // 2)
        if self.resnet:
            return ((STRIDED, STRIDED),) + ((STRIDED,),) * 3 + extras
        pools = [v for v in self.vgg_cfg if isinstance(v, str)]
        bounds = (0,) + _SOURCE_POOLS + (len(pools),)
        backbone = tuple(tuple(pools[a:b]) for a, b in zip(bounds, bounds[1:]))
        return backbone + extras
