"""An exponential moving average of the weights (Polyak averaging) for validation and serving.

The optimizer's weights jump from step to step (a small validation set scored them
0.80-0.89 Dice between neighbouring points of one run); their average over the last few
hundred steps moves smoothly and generalises at least as well. The engine trains the raw
weights and validates, checkpoints ("model") and serves the average.

After update `t` the average moves towards the weights by `1 - decay_t`, where
``decay_t = min(decay, (1 + t) / (10 + t))`` (TensorFlow's `ExponentialMovingAverage`
with `num_updates`): early on the average covers about the last tenth of the steps, so
it neither lags behind a fast-learning start nor remembers the random initialisation;
from ``t ~ 10 / (1 - decay)`` on it averages over ``1 / (1 - decay)`` steps.
BatchNorm statistics are copied, not averaged (`copy_buffers`): they describe the
activations of recent weights, and the average is close to those.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightEma:
    """The moving average of `model`'s parameters, kept in a frozen copy of the bare model.

    Args:
        model: the trained module (bare: unwrap DDP / torch.compile first); its
            parameters are read in place at every `update`.
        decay: the long-run decay (`TrainConfig.ema_decay`); horizon 1 / (1 - decay) steps.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.source = model
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.updates = 0
        pairs = [
            (mine, theirs)
            for mine, theirs in zip(self.module.parameters(), model.parameters(), strict=True)
            if theirs.dtype.is_floating_point
        ]
        # The parameter tensors themselves (the optimizer updates them in place), so
        # an update builds no lists.
        self._mine: list[torch.Tensor] = [m for m, _ in pairs]
        self._theirs: list[torch.Tensor] = [t for _, t in pairs]

    def decay_at(self, updates: int) -> float:
        """The decay of update number `updates` (1-based), warm-up included."""
        return min(self.decay, (1 + updates) / (10 + updates))

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the current weights: one fused op for all tensors."""
        self.updates += 1
        weight = 1.0 - self.decay_at(self.updates)
        torch._foreach_lerp_(self._mine, self._theirs, weight)

    @torch.no_grad()
    def copy_buffers(self) -> None:
        """Give the average the trained model's buffers (BatchNorm running statistics)."""
        for mine, theirs in zip(self.module.buffers(), self.source.buffers(), strict=True):
            mine.copy_(theirs)

    def served(self) -> nn.Module:
        """The averaged model with current buffers, in eval mode: what validation scores
        and checkpoints save."""
        self.copy_buffers()
        return self.module.eval()

    def reset(self) -> None:
        """Restart the average at the current weights (a checkpoint without one)."""
        self.module.load_state_dict(self.source.state_dict())
        self.updates = 0
