"""Helpers shared by several test files (fixtures live in conftest.py)."""
from __future__ import annotations

from dainet.boxes.priors import PriorSpec
from dainet.models.config import ModelConfig

PAPER_STEPS = (4, 8, 16, 32, 64, 128)
PAPER_SIZES = (16, 32, 64, 128, 256, 512)   # second shot (spec §4)


def prior_spec(steps=PAPER_STEPS, sizes=PAPER_SIZES, clip: bool = False, variances=(0.1, 0.2),
               model: ModelConfig | None = None) -> PriorSpec:
    """The priors of one shot of ``model`` (default: the paper network) without a params file."""
    return PriorSpec(steps=steps, sizes=sizes, variances=variances, clip=clip,
                     downsampling=(model or ModelConfig()).level_downsampling)
