"""Training engine: plain functions and small hooks, no orchestration imports."""

from unet_core.engine.cadence import CheckpointCadence
from unet_core.engine.checkpoint import (
    CHECKPOINT_FILE,
    CheckpointWriteError,
    capture_state,
    load_checkpoint,
    restore_state,
    save_checkpoint,
    unwrap,
)
from unet_core.engine.config import (
    EPOCH_METRICS,
    EarlyStoppingConfig,
    OptimConfig,
    SchedulerConfig,
    TrainConfig,
)
from unet_core.engine.ema import WeightEma
from unet_core.engine.loop import (
    EpochResult,
    FitResult,
    Hooks,
    Trainer,
    amp_dtype,
    evaluate,
    fit,
    memory_format,
    optimizer_steps,
    train_one_epoch,
    validates,
)
from unet_core.engine.optim import Schedule, build_optimizer

__all__ = [
    "CHECKPOINT_FILE",
    "EPOCH_METRICS",
    "CheckpointCadence",
    "CheckpointWriteError",
    "EarlyStoppingConfig",
    "EpochResult",
    "FitResult",
    "Hooks",
    "OptimConfig",
    "Schedule",
    "SchedulerConfig",
    "TrainConfig",
    "Trainer",
    "WeightEma",
    "amp_dtype",
    "build_optimizer",
    "capture_state",
    "evaluate",
    "fit",
    "load_checkpoint",
    "memory_format",
    "optimizer_steps",
    "restore_state",
    "save_checkpoint",
    "train_one_epoch",
    "unwrap",
    "validates",
]
