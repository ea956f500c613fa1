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


def cosine_lr(base_lr: float, iteration: int, total: int, final_fraction: float = 0.0) -> float:
    """Cosine decay from ``base_lr`` at iteration 0 to ``final_fraction * base_lr`` at ``total``.

    Not in the paper (``train.lr_schedule: cosine``): a from-scratch run on a fixed small
    budget ends at a low lr without step boundaries to place by hand.
    """
    t = min(max(iteration, 0), total) / max(total, 1)
    return base_lr * (final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * t)))


def scheduled_lr(schedule: str, base_lr: float, iteration: int, total: int, steps: list[int],
                 gamma: float, warmup_iters: int, final_fraction: float = 0.0) -> float:
    """The lr of ``iteration``: ``step`` (the paper's, spec §9) or ``cosine``, times the warm-up."""
    if schedule == "step":
        lr = step_lr(base_lr, iteration, steps, gamma)
    elif schedule == "cosine":
        lr = cosine_lr(base_lr, iteration, total, final_fraction)
    else:
        raise ValueError(f"lr schedule must be step or cosine, got {schedule!r}")
    return lr * warmup_factor(iteration, warmup_iters)


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
