"""Typed settings of the training engine: optimizer, schedule and loop."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from unet_core.metrics import SUMMARY_METRICS

# Every epoch reports these (and, for several classes, per-class scores on top): the
# choices of what early stopping, checkpoint ranking and searches can watch.
EPOCH_METRICS = ("val_loss", *(f"val_{name}" for name in SUMMARY_METRICS), "train_loss")


def check_epoch_metric(value: str, field: str) -> str:
    """`value` when it names an epoch metric; else a ValueError that lists the choices."""
    if value not in EPOCH_METRICS:
        raise ValueError(f"{field} {value!r} is not an epoch metric; choose one of {EPOCH_METRICS}")
    return value


# Weight averaging, on by default. bench/bench_ema.py scores the trained weights and their
# average at the same steps of one default-recipe run on the synthetic cells (issue #14):
# with 255 steps in the 120-s budget the average (0.999) was steadier and better from
# the first quarter on (mean test Dice 0.890 vs 0.871, lowest 0.882 vs 0.840, largest
# change between neighbouring scores 0.010 vs 0.039, final 0.900 vs 0.883); on a machine
# so loaded that only 38 steps ran it swung less but ended lower (0.854 vs 0.866): it
# lags when a run is a few dozen steps. 0.999 averages the last ~1000 steps of long
# runs and ~1/10 of the steps taken before that (warm-up in `unet_core.engine.ema`);
# an update costs ~0.5% of a step (7.8 M parameters, CPU).
EMA_DECAY: float | None = 0.999


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OptimConfig(_Frozen):
    """Optimizer choice and its knobs."""

    model_config = ConfigDict(title="Optimizer")

    name: Literal["adam", "adamw", "sgd"] = Field("adamw", description="optimizer")
    lr: float = Field(1e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(1e-4, ge=0, description="L2 penalty (decoupled for adamw)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD only")
    nesterov: bool = Field(True, description="SGD only")
    betas: tuple[float, float] = Field(
        (0.9, 0.999), description="Adam/AdamW moving-average coefficients"
    )


class SchedulerConfig(_Frozen):
    """Learning-rate schedule, stepped once per optimizer step (per epoch for plateau)."""

    model_config = ConfigDict(title="Learning-rate schedule")

    name: Literal["none", "cosine", "poly", "plateau"] = Field(
        "cosine", description="schedule after the warm-up"
    )
    warmup_epochs: float = Field(0.0, ge=0, description="linear warm-up length in epochs")
    min_lr_ratio: float = Field(0.01, ge=0, le=1, description="final lr as a fraction of lr")
    poly_power: float = Field(0.9, gt=0, description="exponent of the poly schedule")
    plateau_patience: int = Field(
        3, ge=1, description="plateau: validations without improvement before the lr drops"
    )
    plateau_factor: float = Field(0.5, gt=0, lt=1, description="plateau: lr multiplier per drop")


class EarlyStoppingConfig(_Frozen):
    """Stop when the monitored metric has not improved by min_delta for patience validations.

    Patience counts validations, not epochs: with `train.val_every: 5` and `patience: 10`
    training stops after 50 epochs without improvement.
    """

    model_config = ConfigDict(title="Early stopping")

    enabled: bool = Field(True, description="stop when the monitored metric stalls")
    monitor: str = Field(
        "val_dice",
        description="the epoch metric that ranks epochs (best checkpoint) and stops training",
        json_schema_extra={"enum": list(EPOCH_METRICS)},
    )
    mode: Literal["max", "min"] = Field("max", description="whether higher or lower is better")
    patience: int = Field(
        10,
        ge=1,
        description="validations without improvement before stopping (epochs when "
        "train.val_every is 1)",
    )
    min_delta: float = Field(0.0, ge=0, description="smallest change that counts as improvement")

    @field_validator("monitor")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        return check_epoch_metric(value, "early_stopping.monitor")


class TrainConfig(_Frozen):
    """The training loop. Batch size is per worker; the global batch is this times workers."""

    model_config = ConfigDict(title="Training loop")

    epochs: int = Field(
        20, ge=1, description="upper bound of epochs (early stopping may end first)"
    )
    batch_size: int = Field(8, ge=1, description="images per worker per step")
    amp: Literal["auto", "off", "bf16", "fp16"] = Field(
        "auto",
        description="mixed precision; auto: bf16 on CUDA compute capability >= 8.0 (A100, "
        "H100), fp16 with a GradScaler on older GPUs (V100, T4: bf16 is emulated there), "
        "off on CPU",
    )
    channels_last: bool = Field(
        False, description="NHWC / NDHWC memory layout (faster convolutions on tensor cores)"
    )
    compile: bool = Field(
        False, description="torch.compile the model (minutes of compile time on first step)"
    )
    cudnn_benchmark: bool = Field(
        False, description="let cuDNN time its convolution algorithms (fixed input shapes only)"
    )
    grad_clip_norm: float | None = Field(
        1.0, gt=0, description="clip the gradient norm to this; none: no clipping"
    )
    accumulate_steps: int = Field(
        1, ge=1, description="micro-batches per optimizer step (the epoch's leftovers step too)"
    )
    seed: int = Field(0, description="seed of weights, sampling and augmentation")
    loader_workers: int | None = Field(
        None,
        ge=0,
        description="DataLoader worker processes; none: up to 4 on CUDA (the CPUs this process "
        "may use, less one), 0 on CPU where training itself needs the cores",
    )
    steps_per_epoch: int | None = Field(
        None,
        ge=1,
        description="batches per worker per epoch (whole images: shuffled passes over the "
        "train cases, as many as it takes); none: one pass over the train cases (whole "
        "images) or about one patch per train case (patches) over all workers",
    )
    val_every: int = Field(
        1,
        ge=1,
        description="validate every N epochs (the last epoch always validates); early "
        "stopping patience counts validations",
    )
    early_stopping: EarlyStoppingConfig = Field(
        EarlyStoppingConfig(), description="when to stop before the last epoch"
    )
    ema_decay: float | None = Field(
        EMA_DECAY,
        ge=0,
        lt=1,
        description="validate, checkpoint and serve a moving average of the weights with "
        "this decay per optimizer step, e.g. 0.999 (horizon 1/(1-decay) steps, shorter "
        "early in training); none: the trained weights",
    )
    log_every_steps: int = Field(
        0, ge=0, description="call the on_step hook with the mean loss every N steps; 0: never"
    )
