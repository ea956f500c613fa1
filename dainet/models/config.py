"""The network's architecture as data: the `model` section of params.yaml (spec §2, §3, §5, §6).

:class:`ModelConfig` holds the paper's numbers (its defaults are the spec values, so
``ModelConfig()`` is the published network) plus a channel multiplier ``width``.
Every derived channel count goes through :meth:`ModelConfig.ch`, so a small width
gives a small but structurally identical network (same layers, same strides, same
prior count); ``width: 1.0`` is needed to load published weights.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from dainet.params import ParamError, Section

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
    vgg_cfg: tuple = (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL_CEIL,
                      512, 512, 512, POOL, 512, 512, 512, POOL)
    fc_channels: int = 1024
    fc_dilation: int = 3
    extras_cfg: tuple = (256, 512, 128, 256)
    l2norm_scales: tuple = (10.0, 8.0, 5.0)
    l2norm_eps: float = 1e-10
    fem_dilation: int = 3
    num_classes: int = 2
    ref_channels: int = 64
    width: float = 1.0
    decomp_channels: int = 64
    decomp_kernel: int = 9
    decomp_layers: int = 5
    norm: str = "none"            # not in the paper: batch | group inside every backbone/extras/FPN/FEM conv
    norm_group_size: int = 8      # GroupNorm: the most groups of at least this many channels
    norm_scope: str = "all"       # backbone (vgg convs only) | all (also extras, FPN, FEM)
    source: str = field(default="ModelConfig", compare=False)  # for error messages

    def __post_init__(self):
        self._check()

    # -- construction ------------------------------------------------------------
    @classmethod
    def from_section(cls, s: Section) -> "ModelConfig":
        """Read the `model` section of params.yaml; bad values raise ParamError naming the key."""
        vgg = s.list("vgg_cfg", of=None)
        for item in vgg:
            if not (item in (POOL, POOL_CEIL) or (isinstance(item, int) and not isinstance(item, bool)
                                                 and item > 0)):
                raise ParamError(f"{s.source}: {s.path}.vgg_cfg: items must be positive integers "
                                 f"or '{POOL}' / '{POOL_CEIL}', got {item!r}")
        return cls(
            vgg_cfg=tuple(vgg),
            fc_channels=s.int("fc_channels"),
            fc_dilation=s.int("fc_dilation"),
            extras_cfg=tuple(s.list("extras_cfg", int, 4)),
            l2norm_scales=tuple(s.list("l2norm_scales", float, 3)),
            l2norm_eps=s.float("l2norm_eps"),
            fem_dilation=s.int("fem_dilation"),
            num_classes=s.int("num_classes"),
            ref_channels=s.int("ref_channels"),
            width=s.float("width"),
            decomp_channels=s.int("decomp_channels"),
            decomp_kernel=s.int("decomp_kernel"),
            decomp_layers=s.int("decomp_layers"),
            norm=s.choice("norm", NORMS),
            norm_group_size=s.int("norm_group_size"),
            norm_scope=s.choice("norm_scope", NORM_SCOPES),
            source=f"{s.source}: {s.path}",
        )

    def _fail(self, key: str, what: str):
        raise ParamError(f"{self.source}.{key}: {what}")

    def _check(self):
        if not self.width > 0:
            self._fail("width", f"must be > 0, got {self.width}")
        pools = [i for i, v in enumerate(self.vgg_cfg) if v in (POOL, POOL_CEIL)]
        if len(pools) != 5 or any(self.vgg_cfg[p - 1] in (POOL, POOL_CEIL) for p in pools[2:]):
            self._fail("vgg_cfg", "needs exactly 5 pools, each of the last three right after a conv "
                                  f"(the of1..of3 taps), got {list(self.vgg_cfg)}")
        if isinstance(self.vgg_cfg[0], str):
            self._fail("vgg_cfg", "must start with a conv")
        for key in ("fc_channels", "fc_dilation", "fem_dilation", "num_classes", "ref_channels",
                    "decomp_channels", "decomp_layers", "norm_group_size"):
            if getattr(self, key) < 1:
                self._fail(key, f"must be >= 1, got {getattr(self, key)}")
        if self.norm_scope not in NORM_SCOPES:
            self._fail("norm_scope", f"must be one of {'|'.join(NORM_SCOPES)}, got {self.norm_scope!r}")
        if self.norm not in NORMS:
            self._fail("norm", f"must be one of {'|'.join(NORMS)}, got {self.norm!r}")
        if self.decomp_kernel < 1 or self.decomp_kernel % 2 == 0:
            self._fail("decomp_kernel", f"must be odd, got {self.decomp_kernel}")
        small = [c for c in self.source_channels if c < 3]
        if small:
            self._fail("width", f"{self.width} leaves a FEM input with fewer than 3 channels "
                                f"(sources {self.source_channels}); FEM splits C into C//3 + C//3 + rest")

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
        """Channels of of1..of6 (spec §3: [256, 512, 512, 1024, 512, 256] at width 1)."""
        pools = [i for i, v in enumerate(self.vgg_cfg) if isinstance(v, str)]
        taps = [self.ch(self.vgg_cfg[pools[k] - 1]) for k in _SOURCE_POOLS]
        return taps + [self.ch(self.fc_channels), self.ch(self.extras_cfg[1]), self.ch(self.extras_cfg[3])]

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

        3x3 pad-1 convs, conv6 (pad 3, dilation 3) and 1x1 convs keep the size; the priors
        (:class:`dainet.boxes.priors.PriorSpec`) derive the feature-map sizes from this.
        """
        pools = [v for v in self.vgg_cfg if isinstance(v, str)]
        bounds = (0,) + _SOURCE_POOLS + (len(pools),)
        backbone = tuple(tuple(pools[a:b]) for a, b in zip(bounds, bounds[1:]))
        return backbone + ((STRIDED,),) * (len(self.extras_cfg) // 2)
