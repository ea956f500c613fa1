"""Params section `train` as one typed config (spec §9)."""
from __future__ import annotations

from dataclasses import dataclass

from dainet.training.objective import LossWeights


@dataclass(frozen=True)
class TrainConfig:
    """Params section `train`; ``image_size`` (the crop side, params `augment`) and ``losses``
    (:class:`LossWeights`, also read from `train`) are given::

        train.load(TrainConfig, image_size=augment.value("image_size", int), losses=train.load(LossWeights))
    """
    method: str
    dsfd_input: str
    device: str
    seed: int
    batch_size: int
    num_workers: int
    optimizer: str
    lr: float
    lr_reference_batch: int
    ref_lr_mult: float
    train_l2norm: bool
    momentum: float
    weight_decay: float
    lr_steps: tuple[int, ...]
    lr_gamma: float
    warmup_iters: int
    lr_schedule: str
    lr_final_fraction: float
    clean_warmup_iters: int
    max_iter: int
    max_epochs: int
    clip_grad_norm: float
    ema_decay: float
    bn_streams: str
    match_iou: float
    neg_pos_ratio: int
    smooth_l1_beta: float
    checkpoint_every: int
    log_every: int
    image_every: int
    image_size: int
    losses: LossWeights

    @property
    def reflectance(self) -> bool:
        return self.method == "dainet"
