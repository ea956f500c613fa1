"""Square priors (anchors), one per feature-map cell, for the six detection levels (spec §4).

The feature-map sizes are derived from the VGG16 reduced-fc backbone plus extras (spec §2)
without running the network, so priors can be built (and cached) per input size.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from dainet.errors import UserError


def _pool_floor(n: int) -> int:
    """2x2 max-pool, stride 2 (``M``): the last odd row/column is dropped."""
    return n // 2


def _pool_ceil(n: int) -> int:
    """2x2 max-pool, stride 2, ceil_mode (``C``): a last odd row/column gets its own window."""
    return -(-n // 2)


def _conv_s2(n: int) -> int:
    """3x3 conv, stride 2, padding 1 (the extras): floor((n + 2 - 3) / 2) + 1."""
    return (n - 1) // 2 + 1 if n > 0 else 0


# Downsampling ops between consecutive detection levels. 3x3 pad-1 convs and conv6
# (3x3, pad 3, dilation 3) keep the size, so only pools and strided convs appear.
#   of1 (stride 4):   pool1 M, pool2 M            -> after conv3_3
#   of2 (stride 8):   pool3 C (ceil_mode)         -> after conv4_3
#   of3 (stride 16):  pool4 M                     -> after conv5_3
#   of4 (stride 32):  pool5 M                     -> after conv6 / fc7
#   of5 (stride 64):  extras[1], 3x3 s2 p1
#   of6 (stride 128): extras[3], 3x3 s2 p1
_LEVEL_OPS = (
    (_pool_floor, _pool_floor),
    (_pool_ceil,),
    (_pool_floor,),
    (_pool_floor,),
    (_conv_s2,),
    (_conv_s2,),
)
# Every op halves the size, so level k's stride is 2 ** (ops up to and including k).
_LEVEL_STRIDES = tuple(2 ** sum(len(ops) for ops in _LEVEL_OPS[:k + 1])
                       for k in range(len(_LEVEL_OPS)))


def feature_sizes(image_hw: tuple[int, int], steps) -> list[tuple[int, int]]:
    """Feature-map sizes ``[(fh, fw)] * 6`` of of1..of6 for an ``H x W`` input.

    ``steps`` (params ``priors.steps``) must be the backbone's strides [4, 8, ..., 128];
    they are checked here so priors and network can never disagree.
    """
    if tuple(float(s) for s in steps) != tuple(map(float, _LEVEL_STRIDES)):
        raise UserError(f"params.yaml: priors.steps: expected {list(_LEVEL_STRIDES)} "
                        f"(the strides of the VGG reduced-fc backbone), got {list(steps)}")
    h, w = (int(v) for v in image_hw)
    sizes = []
    for ops in _LEVEL_OPS:
        for op in ops:
            h, w = op(h), op(w)
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
def _priors_cached(image_hw: tuple, steps: tuple, sizes: tuple, clip: bool) -> np.ndarray:
    levels = feature_sizes(image_hw, steps)
    priors = np.concatenate([level_priors(fh, fw, step, size, image_hw)
                             for (fh, fw), step, size in zip(levels, steps, sizes)])
    if clip:
        priors = np.clip(priors, 0.0, 1.0)
    priors = priors.astype(np.float32)
    priors.setflags(write=False)  # shared by every caller through the cache
    return priors


def make_priors(image_hw, steps, sizes, clip: bool = False) -> np.ndarray:
    """Priors ``[P, 4]`` float32, cxcywh normalised, for an ``H x W`` input (spec §4).

    Level k, cell (i, j): ``cx = (j + 0.5) * steps[k] / W``, ``cy = (i + 0.5) * steps[k] / H``,
    ``w = sizes[k] / W``, ``h = sizes[k] / H``; cells row-major, levels in order; ``clip``
    clamps the cxcywh values to [0, 1]. Cached per (image_hw, steps, sizes, clip): training
    reuses the same array every step. The result is read-only (copy it to modify it).
    """
    if len(sizes) != len(steps):
        raise UserError(f"params.yaml: priors: {len(steps)} steps but {len(sizes)} sizes")
    return _priors_cached(tuple(int(v) for v in image_hw), tuple(float(s) for s in steps),
                          tuple(float(s) for s in sizes), bool(clip))
