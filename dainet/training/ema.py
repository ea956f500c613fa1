"""An exponential moving average of the model state (params ``train.ema_decay``; not in the paper).

The average is kept in numpy, outside Jittor's graph: folding a new state in reads the
weights once the optimiser has written them and never feeds anything back into training,
so the training path is that of a run without the average. Validation, the choice of the
best model and the exported weights use the average (:meth:`WeightAverage.swapped_in`).
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from dainet.weights import WeightError, load_into


class WeightAverage:
    """``avg = d * avg + (1 - d) * state`` over the float entries of ``net.state_dict()``
    (the weights and the BatchNorm running statistics), after every optimiser update.

    The rate ramps up as ``d_n = min(decay, (1 + n) / (10 + n))`` for the ``n``-th update
    (TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``): early updates, when the
    initial weights are still far from any useful model, are not held for ``1 / (1 - decay)``
    iterations. Non-float entries are copied.
    """

    def __init__(self, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0                      # optimiser updates folded in
        self.arrays: dict[str, np.ndarray] | None = None

    def rate(self, n: int) -> float:
        """The decay used for the ``n``-th update (n >= 1)."""
        return min(self.decay, (1.0 + n) / (10.0 + n))

    def fold(self, net, updates: int) -> None:
        """Fold in ``net``'s state after ``updates`` optimiser updates; a no-op when that state
        (or a later one) is in already. ``updates`` must grow by one between calls that fold."""
        if updates <= self.updates:
            return
        if updates != self.updates + 1:
            raise RuntimeError(f"weight average holds {self.updates} updates, asked to fold update {updates}")
        state = {k: v.numpy() for k, v in net.state_dict().items()}
        if self.arrays is None:
            self.arrays = {k: np.array(a, copy=True) for k, a in state.items()}
        else:
            d = np.float32(self.rate(updates))
            for k, a in state.items():
                avg = self.arrays[k]
                if np.issubdtype(avg.dtype, np.inexact):
                    avg *= d
                    avg += (np.float32(1.0) - d) * a
                else:
                    self.arrays[k] = np.array(a, copy=True)
        self.updates = updates

    @contextmanager
    def swapped_in(self, net):
        """``net`` holds the average inside the block and its own state again after it
        (bit for bit). Without anything folded in yet, ``net`` is left as it is."""
        if self.arrays is None:
            yield
            return
        live = {k: v.numpy().copy() for k, v in net.state_dict().items()}
        load_into(net, self.arrays, "the weight average")
        try:
            yield
        finally:
            load_into(net, live, "the live weights")

    def state(self) -> dict:
        """For the resumable checkpoint: ``{"updates": n, "arrays": {name: array} or None}``."""
        return {"updates": self.updates, "arrays": self.arrays}

    def restore(self, state: dict, source: str) -> None:
        """Inverse of :meth:`state`; ``source`` names the file in errors."""
        try:
            updates, arrays = int(state["updates"]), state["arrays"]
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightError(f"{source}: incomplete weight average ({exc})") from None
        self.updates = updates
        self.arrays = None if arrays is None else {k: np.array(v, copy=True) for k, v in arrays.items()}
