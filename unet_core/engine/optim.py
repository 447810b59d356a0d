"""Optimizer and learning-rate schedule factories."""

from __future__ import annotations

import math

import torch
from torch import nn

from unet_core.engine.config import OptimConfig, SchedulerConfig


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Build the optimizer; norm and bias parameters get no weight decay."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for param in model.parameters():
        if param.requires_grad:
            # 1-D tensors are norm scales and biases: decaying them only hurts.
            (no_decay if param.ndim <= 1 else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


class Schedule:
    """Per-step learning-rate schedule with linear warm-up; `plateau` steps per epoch.

    Kept as one small class (not torch's chained schedulers) so that its whole state is
    two integers and resuming is exact.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        cfg: SchedulerConfig,
        steps_per_epoch: int,
        epochs: int,
    ) -> None:
        self.optimizer = optimizer
        self.cfg = cfg
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.total_steps = max(1, steps_per_epoch * epochs)
        self.warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)
        self.step_count = 0
        self.plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None
        if cfg.name == "plateau":
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience
            )
        self._apply()

    def factor(self) -> float:
        """The multiplier of the base learning rate at the current step."""
        step = self.step_count
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        if self.cfg.name in ("none", "plateau"):
            return 1.0
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        floor = self.cfg.min_lr_ratio
        if self.cfg.name == "cosine":
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        return floor + (1 - floor) * (1 - progress) ** self.cfg.poly_power

    def _apply(self) -> None:
        if self.plateau is not None and self.step_count >= self.warmup_steps:
            return  # ReduceLROnPlateau owns the lr after warm-up
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * self.factor()

    def step(self) -> None:
        """Advance one optimizer step."""
        self.step_count += 1
        self._apply()

    def epoch_end(self, metric: float | None) -> None:
        """Feed the monitored validation metric to the plateau schedule."""
        if self.plateau is not None and metric is not None and self.step_count >= self.warmup_steps:
            self.plateau.step(metric)

    def state_dict(self) -> dict:
        state: dict = {"step_count": self.step_count}
        if self.plateau is not None:
            state["plateau"] = self.plateau.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        if self.plateau is not None and "plateau" in state:
            self.plateau.load_state_dict(state["plateau"])
        self._apply()
