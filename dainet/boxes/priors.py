"""Square priors (anchors), one per feature-map cell, for the six detection levels (spec §4).

:class:`PriorSpec` is the one home of the priors of one shot: params ``priors.steps``,
``sizes_shot1`` / ``sizes_shot2``, ``variances``, ``clip``, and the feature-map sizes,
derived without running the network from the size-changing ops that the model config
states (:attr:`dainet.models.config.ModelConfig.level_downsampling`: the pools of
``model.vgg_cfg`` and the strided extras convs), so priors can be built (and cached)
per input size. Training, prediction and visualisation all build it with
:meth:`PriorSpec.for_shot`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from dainet.errors import UserError
from dainet.params import Section

SHOTS = (1, 2)  # first shot (original features), second shot (FEM features; the test forward)


def _pool_floor(n: int) -> int:
    """2x2 max-pool, stride 2 (``M``): the last odd row/column is dropped."""
    return n // 2


def _pool_ceil(n: int) -> int:
    """2x2 max-pool, stride 2, ceil_mode (``C``): a last odd row/column gets its own window."""
    return -(-n // 2)


def _conv_s2(n: int) -> int:
    """3x3 conv, stride 2, padding 1 (``S``, the extras): floor((n + 2 - 3) / 2) + 1."""
    return (n - 1) // 2 + 1 if n > 0 else 0


# The op codes of ModelConfig.level_downsampling; every op halves the size.
_OPS = {"M": _pool_floor, "C": _pool_ceil, "S": _conv_s2}


def _feature_sizes(image_hw: tuple, steps: tuple, downsampling: tuple) -> list[tuple[int, int]]:
    strides = tuple(2 ** sum(len(ops) for ops in downsampling[:k + 1]) for k in range(len(downsampling)))
    if tuple(map(float, steps)) != tuple(map(float, strides)):
        raise UserError(f"params.yaml: priors.steps: expected {list(strides)} "
                        f"(the strides of the VGG reduced-fc backbone), got {list(steps)}")
    h, w = image_hw
    sizes = []
    for ops in downsampling:
        for op in ops:
            h, w = _OPS[op](h), _OPS[op](w)
        sizes.append((h, w))
    if min(min(s) for s in sizes) < 1:
        raise UserError(f"input of {image_hw[0]}x{image_hw[1]} pixels is too small for the "
                        f"backbone: feature-map sizes {sizes} include an empty level")
    return sizes


def level_priors(fh: int, fw: int, step: float, size: float, image_hw) -> np.ndarray:
    """Priors ``[fh*fw, 4]`` cxcywh normalised of one level, row-major over cells (i, j)."""
    h, w = image_hw
    cy, cx = np.meshgrid((np.arange(fh) + 0.5) * step / h, (np.arange(fw) + 0.5) * step / w,
                         indexing="ij")
    wh = np.broadcast_to([size / w, size / h], (fh * fw, 2))
    return np.concatenate([cx.reshape(-1, 1), cy.reshape(-1, 1), wh], axis=1)


@lru_cache(maxsize=64)
def _priors_cached(image_hw: tuple, steps: tuple, sizes: tuple, clip: bool, downsampling: tuple) -> np.ndarray:
    levels = _feature_sizes(image_hw, steps, downsampling)
    priors = np.concatenate([level_priors(fh, fw, step, size, image_hw)
                             for (fh, fw), step, size in zip(levels, steps, sizes)])
    if clip:
        priors = np.clip(priors, 0.0, 1.0)
    priors = priors.astype(np.float32)
    priors.setflags(write=False)  # shared by every caller through the cache
    return priors


@dataclass(frozen=True)
class PriorSpec:
    """Priors of one shot.

    ``steps``, ``sizes``, ``variances``, ``clip``: params ``priors.*`` (``sizes`` of the
    shot); ``downsampling``: the model's ``level_downsampling`` (op codes ``M`` floor
    pool, ``C`` ceil pool, ``S`` 3x3 stride-2 pad-1 conv, per level).
    """

    steps: tuple[float, ...]
    sizes: tuple[float, ...]
    variances: tuple[float, float]
    clip: bool
    downsampling: tuple[tuple[str, ...], ...]

    def __post_init__(self):
        # normalised once, so equal specs share one cache entry
        object.__setattr__(self, "steps", tuple(float(s) for s in self.steps))
        object.__setattr__(self, "sizes", tuple(float(s) for s in self.sizes))
        object.__setattr__(self, "variances", tuple(float(v) for v in self.variances))
        object.__setattr__(self, "clip", bool(self.clip))
        object.__setattr__(self, "downsampling", tuple(tuple(ops) for ops in self.downsampling))
        if len(self.sizes) != len(self.steps):
            raise UserError(f"params.yaml: priors: {len(self.steps)} steps but {len(self.sizes)} sizes")

    @classmethod
    def for_shot(cls, priors: Section, model, shot: int) -> "PriorSpec":
        """The priors of ``shot`` (1 or 2; the test forward uses 2, spec §5) from params
        section ``priors`` (``steps``, ``variances``, ``clip`` and ``sizes_shot<shot>``, by
        :meth:`~dainet.params.Section.load`) and ``model`` (a
        :class:`~dainet.models.config.ModelConfig`)."""
        if shot not in SHOTS:
            raise ValueError(f"shot must be one of {SHOTS}, got {shot!r}")
        return priors.load(cls, sizes=priors.value(f"sizes_shot{shot}", tuple[float, ...]),
                           downsampling=model.level_downsampling)

    def feature_sizes(self, image_hw) -> list[tuple[int, int]]:
        """Feature-map sizes ``[(fh, fw)] * 6`` of of1..of6 for an ``H x W`` input.

        ``steps`` must be the backbone's strides [4, 8, ..., 128] (a UserError names
        ``priors.steps`` otherwise), so priors and network can never disagree.
        """
        return _feature_sizes(tuple(int(v) for v in image_hw), self.steps, self.downsampling)

    def fits(self, image_hw) -> bool:
        """Whether an ``h x w`` input leaves every detection level at least one cell."""
        try:
            self.feature_sizes(image_hw)
        except UserError:
            return False
        return True

    def check(self) -> None:
        """Raise a UserError when ``steps`` are not the backbone's strides.

        An input of the largest step's side gives every level one cell, so after this
        check :meth:`fits` can only fail for an input that is too small.
        """
        side = int(max(self.steps))
        self.feature_sizes((side, side))

    def priors(self, image_hw) -> np.ndarray:
        """Priors ``[P, 4]`` float32, cxcywh normalised, for an ``H x W`` input (spec §4).

        Level k, cell (i, j): ``cx = (j + 0.5) * steps[k] / W``, ``cy = (i + 0.5) * steps[k] / H``,
        ``w = sizes[k] / W``, ``h = sizes[k] / H``; cells row-major, levels in order; ``clip``
        clamps the cxcywh values to [0, 1]. Cached per spec and input size: training reuses
        the same array every step. The result is read-only (copy it to modify it).
        """
        return _priors_cached(tuple(int(v) for v in image_hw), self.steps, self.sizes, self.clip,
                              self.downsampling)


def both_shots(priors: Section, model) -> tuple[PriorSpec, PriorSpec]:
    """``(first shot, second shot)`` priors, as training needs them (spec §9)."""
    return tuple(PriorSpec.for_shot(priors, model, shot) for shot in SHOTS)
