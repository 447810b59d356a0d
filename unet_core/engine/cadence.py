"""When a run writes a checkpoint: every N epochs or M minutes, never losing the best.

A pure policy (no I/O): the Ray Train hook and Tune trials ask it after each epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from unet_core.engine.results import EpochResult


class CheckpointCadence:
    """Decides, epoch by epoch, whether to write a checkpoint.

    A checkpoint is due when `every_epochs` epochs passed since the last one, or
    `every_minutes` of wall time did; the last epoch and a validated epoch that improved
    on the best are always due, so the best model and the final one are never lost.
    Resuming after a crash therefore repeats at most one interval.

    Args:
        every_epochs: epochs between checkpoints; None: no epoch cadence.
        every_minutes: wall minutes between checkpoints; None: no time cadence.
        clock: seconds, monotonic (injectable so tests need not sleep).
    """

    def __init__(
        self,
        every_epochs: int | None,
        every_minutes: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.every_epochs, self.every_minutes, self.clock = every_epochs, every_minutes, clock
        self.last_epoch = -1  # epochs count from 0: the first interval ends at every_epochs - 1
        self.last_time = clock()

    def due(self, result: EpochResult) -> bool:
        """Whether `result`'s epoch is checkpointed; a True answer restarts both intervals."""
        now = self.clock()
        due = result.last or (result.validated and result.improved)
        if self.every_epochs is not None:
            due = due or result.epoch - self.last_epoch >= self.every_epochs
        if self.every_minutes is not None:
            due = due or now - self.last_time >= 60.0 * self.every_minutes
        if due:
            self.last_epoch, self.last_time = result.epoch, now
        return due

    def resumed_at(self, epoch: int) -> None:
        """Count the intervals from a checkpoint of `epoch` that a run resumed from."""
        self.last_epoch, self.last_time = epoch, self.clock()
