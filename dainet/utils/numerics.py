"""Reductions that stay accurate over millions of float32 values.

Jittor's CPU kernels accumulate a float32 sum or mean sequentially in float32, so over a
large tensor the rounding error grows with its size (the mean of 4.9M uniform values came
out 6e-4 to 2e-3 off; numpy and PyTorch sum pairwise). The losses and pooled descriptors
below reduce whole images, so they accumulate in float64 and return float32: the cast
costs about as much as the reduction itself (measured: same time on 5M values).
"""
from __future__ import annotations

from dainet.jt import jt


def mean64(x: jt.Var, dims: tuple[int, ...] | None = None, keepdims: bool = False) -> jt.Var:
    """Mean of float32 ``x`` (over ``dims``, or all of it) accumulated in float64, as float32."""
    y = x.float64()
    y = y.mean() if dims is None else y.mean(dims=tuple(dims), keepdims=keepdims)
    return y.float32()
