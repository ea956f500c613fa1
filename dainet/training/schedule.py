"""Learning-rate rules of spec §9 (pure functions, no Jittor)."""
from __future__ import annotations

import bisect
import math


def scaled_lr(base_lr: float, batch_size: int, world_size: int = 1, reference_batch: int = 4) -> float:
    """``base_lr * round(sqrt(batch * gpus / reference), 4)`` — the reference's scaling rule."""
    return base_lr * round(math.sqrt(batch_size * world_size / reference_batch), 4)


def step_lr(base_lr: float, iteration: int, steps: list[int], gamma: float) -> float:
    """Multiply by ``gamma`` once for every step boundary already reached (iteration >= step)."""
    return base_lr * gamma ** bisect.bisect_right(sorted(steps), iteration)


def warmup_factor(iteration: int, warmup_iters: int) -> float:
    """Linear warm-up: ``(iteration + 1) / warmup_iters`` until it reaches 1 (0 iterations: always 1).

    Not in the paper's schedule (its backbone starts from ImageNet weights); it lets a
    from-scratch network on the embedded sample take a larger lr without early blow-ups.
    """
    if warmup_iters <= 0:
        return 1.0
    return min(1.0, (iteration + 1) / warmup_iters)


def total_iterations(max_iter: int, max_epochs: int, iters_per_epoch: int) -> int:
    """Training stops at ``max_iter`` iterations or ``max_epochs`` epochs, whichever comes first."""
    return min(max_iter, max_epochs * iters_per_epoch)
