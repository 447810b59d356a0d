"""Typed settings of the training engine: optimizer, schedule and loop."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OptimConfig(_Frozen):
    """Optimizer choice and its knobs."""

    name: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD only")
    nesterov: bool = Field(True, description="SGD only")
    betas: tuple[float, float] = (0.9, 0.999)


class SchedulerConfig(_Frozen):
    """Learning-rate schedule, stepped once per optimizer step (per epoch for plateau)."""

    name: Literal["none", "cosine", "poly", "plateau"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0, description="linear warm-up length in epochs")
    min_lr_ratio: float = Field(0.01, ge=0, le=1, description="final lr as a fraction of lr")
    poly_power: float = Field(0.9, gt=0)
    plateau_patience: int = Field(3, ge=1)
    plateau_factor: float = Field(0.5, gt=0, lt=1)


class EarlyStoppingConfig(_Frozen):
    """Stop when `monitor` has not improved by `min_delta` for `patience` epochs."""

    enabled: bool = True
    monitor: str = Field("val_dice", description="a key of the validation metrics")
    mode: Literal["max", "min"] = "max"
    patience: int = Field(10, ge=1)
    min_delta: float = Field(0.0, ge=0)


class TrainConfig(_Frozen):
    """The training loop. Batch size is per worker; the global batch is this times workers."""

    epochs: int = Field(20, ge=1)
    batch_size: int = Field(8, ge=1, description="images per worker per step")
    amp: Literal["auto", "off", "bf16", "fp16"] = Field(
        "auto",
        description="auto: bf16 on CUDA compute capability >= 8.0 (A100, H100), fp16 with a "
        "GradScaler on older GPUs (V100, T4: bf16 is emulated there), off on CPU",
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
    grad_clip_norm: float | None = Field(1.0, gt=0)
    accumulate_steps: int = Field(
        1, ge=1, description="micro-batches per optimizer step (the epoch's leftovers step too)"
    )
    seed: int = 0
    loader_workers: int | None = Field(
        None,
        ge=0,
        description="DataLoader worker processes; None: up to 4 on CUDA (the CPUs this process "
        "may use, less one), 0 on CPU where training itself needs the cores",
    )
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    log_every_steps: int = Field(
        0, ge=0, description="call the on_step hook with the mean loss every N steps; 0: never"
    )
