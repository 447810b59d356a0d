"""What training produces, per epoch and per run (shared by the loop and checkpoints)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EpochResult:
    """What one epoch produced; `metrics` holds `train_*` keys, and `val_*` keys when the
    epoch `validated` (every `TrainConfig.val_every` epochs and the last)."""

    epoch: int
    metrics: dict[str, float]
    improved: bool
    seconds: float
    validated: bool = True
    last: bool = False  # the run ends after this epoch (its last, or early stopping)


@dataclass
class FitResult:
    history: list[EpochResult] = field(default_factory=list)
    best_metric: float | None = None
    best_epoch: int | None = None
    stopped_early: bool = False
