"""The training loop as three plain functions: `train_one_epoch`, `evaluate`, `fit`.

Distributed data parallelism is the caller's business (wrap the model in DDP, give the
loaders a DistributedSampler); the loop only all-reduces metric *sums* when a process
group exists, so validation metrics are global, never a mean of per-worker means.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from unet_core.engine.checkpoint import capture_state, restore_state, unwrap
from unet_core.engine.config import EarlyStoppingConfig, TrainConfig
from unet_core.engine.ema import WeightEma
from unet_core.engine.optim import Schedule
from unet_core.engine.results import EpochResult, FitResult

if TYPE_CHECKING:  # a type only: the engine need not import the metrics (and SciPy)
    from unet_core.metrics import MetricAccumulator

Batch = tuple[torch.Tensor, torch.Tensor]
Augment = Callable[[torch.Tensor, torch.Tensor], Batch]
# (model, images [B, C, *spatial]) -> logits; e.g. a sliding window over whole cases
Infer = Callable[[nn.Module, torch.Tensor], torch.Tensor]


@dataclass
class Hooks:
    """Optional callbacks; each receives the result and may raise to abort.

    `on_epoch_end(result, state)` runs on every rank after validation; `state` is the
    checkpoint dict (see `checkpoint.py`) so a hook can persist it.
    """

    on_epoch_end: Callable[[EpochResult, dict], None] | None = None
    # (step, mean training loss of the last `TrainConfig.log_every_steps` steps)
    on_step: Callable[[int, float], None] | None = None


def amp_dtype(
    amp: str, device_type: str, capability: tuple[int, int] | None = None
) -> torch.dtype | None:
    """Resolve the AMP setting to an autocast dtype; None means full precision.

    A pure function of the device, so the choice is testable without one.

    Args:
        amp: "auto", "off", "bf16" or "fp16" (`TrainConfig.amp`).
        device_type: "cuda" or "cpu" (`torch.device.type`).
        capability: the CUDA compute capability, e.g. (8, 0) for A100; ignored off CUDA.
    """
    if amp == "off":
        return None
    if amp != "auto":
        return _DTYPES[amp]
    if device_type != "cuda":
        return None  # CPU autocast is slower than fp32 for convolutions on most CPUs
    # bf16 runs natively from Ampere (8.0) on; V100 (7.0) and T4 (7.5) emulate it slowly,
    # so they get fp16, whose narrow range the GradScaler makes up for.
    return torch.bfloat16 if capability is not None and capability >= (8, 0) else torch.float16


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """`amp_dtype` for `device`, reading its compute capability when it is a GPU."""
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    return amp_dtype(amp, device.type, capability)


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def memory_format(ndim: int) -> torch.memory_format:
    """The channels-last layout of a tensor with `ndim` dims (4: NHWC, 5: NDHWC)."""
    return torch.channels_last_3d if ndim == 5 else torch.channels_last


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _to_device(batch: Batch, device: torch.device, channels_last: bool) -> Batch:
    images, masks = batch
    # non_blocking overlaps the copy with compute when the loader pins memory (CUDA).
    images = images.to(device, non_blocking=True)
    if channels_last and images.ndim in (4, 5):
        images = images.contiguous(memory_format=memory_format(images.ndim))
    return images, masks.to(device, non_blocking=True)


def _reduce_sum(values: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values)
    return values


def sync_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics).

    DDP broadcasts buffers at the start of each training forward, so after the last
    step every rank holds statistics updated by its own last batch. Evaluating with
    those would make each shard use a slightly different model than the one rank 0
    checkpoints; after this call all ranks evaluate exactly the checkpointed model.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)


def optimizer_steps(num_batches: int, accumulate_steps: int) -> int:
    """Optimizer steps in an epoch of `num_batches`: the leftover micro-batches step too."""
    return -(-num_batches // accumulate_steps)


def _group_sizes(loader: Iterable[Batch], accumulate: int) -> Callable[[int], int]:
    """Micro-batches in the accumulation group of batch `step` (smaller for the leftovers)."""
    try:
        total = len(loader)  # type: ignore[arg-type]
    except TypeError:  # an unsized iterable: every group counts as full
        return lambda step: accumulate
    return lambda step: min(accumulate, total - step // accumulate * accumulate)


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[Batch],
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    *,
    device: torch.device,
    scaler: torch.amp.GradScaler | None = None,
    schedule: Schedule | None = None,
    augment: Augment | None = None,
    hooks: Hooks | None = None,
    ema: WeightEma | None = None,
) -> dict[str, float]:
    """Run one pass over `loader`; returns the global mean training loss as `train_loss`.

    Gradients of `cfg.accumulate_steps` micro-batches are summed before each optimizer
    step; under DDP only the last micro-batch of a group all-reduces (`no_sync`). The
    loss is summed on the device: the host waits for the GPU once per epoch (and once
    per `cfg.log_every_steps` when an `on_step` hook is set), never per step.
    """
    model.train()
    dtype = autocast_dtype(cfg.amp, device)
    group_size = _group_sizes(loader, cfg.accumulate_steps)
    loss_sum, batches = torch.zeros((), dtype=torch.float64, device=device), 0
    interval = _Interval(hooks, cfg.log_every_steps, device)
    optimizer.zero_grad(set_to_none=True)
    for step, batch in enumerate(loader):
        images, masks = _to_device(batch, device, cfg.channels_last)
        if augment is not None:
            images, masks = augment(images, masks)
        size = group_size(step)
        last_of_group = (step % cfg.accumulate_steps) + 1 == size
        with _sync_unless(model, last_of_group):
            with _autocast(device, dtype):
                loss = loss_fn(model(images), masks)
            scaled = loss / size  # the mean over the group's micro-batches, leftovers too
            (scaler.scale(scaled) if scaler else scaled).backward()
        if last_of_group:
            _optimizer_step(model, optimizer, cfg, scaler)
            if ema is not None:
                ema.update()
            if schedule is not None:
                schedule.step()
        loss_sum += loss.detach()
        batches += 1
        interval.add(step, loss.detach())
    totals = torch.stack([loss_sum.cpu(), torch.tensor(float(batches), dtype=torch.float64)])
    totals = _reduce_sum(totals.to(_reduce_device(device))).cpu()
    return {"train_loss": float(totals[0] / totals[1].clamp(min=1.0))}


def _sync_unless(model: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """DDP's `no_sync` for a micro-batch that does not end its group (no all-reduce)."""
    no_sync = getattr(model, "no_sync", None)
    return contextlib.nullcontext() if sync or no_sync is None else no_sync()


class _Interval:
    """Calls `hooks.on_step(step, mean loss)` every `every` steps: one sync per interval."""

    def __init__(self, hooks: Hooks | None, every: int, device: torch.device) -> None:
        self.on_step = hooks.on_step if hooks and every else None
        self.every = every
        self.total = torch.zeros((), dtype=torch.float64, device=device)

    def add(self, step: int, loss: torch.Tensor) -> None:
        if self.on_step is None:
            return
        self.total += loss
        if (step + 1) % self.every == 0:
            self.on_step(step, float(self.total) / self.every)
            self.total.zero_()


def _reduce_device(device: torch.device) -> torch.device:
    # NCCL reduces CUDA tensors only; gloo reduces CPU tensors.
    if dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl":
        return device
    return torch.device("cpu")


def _optimizer_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig, scaler
) -> None:
    if scaler is not None:
        scaler.unscale_(optimizer)
    if cfg.grad_clip_norm is not None:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[Batch],
    accumulator: MetricAccumulator,
    *,
    device: torch.device,
    loss_fn: nn.Module | None = None,
    amp: str = "off",
    prefix: str = "val_",
    infer: Infer | None = None,
) -> dict[str, float]:
    """Global metrics over `loader` (all workers' sums are reduced before dividing).

    Under a process group every rank first takes rank 0's buffers (`sync_buffers`), so
    the result equals a single-process evaluation of rank 0's model on the whole split.

    Args:
        accumulator: a `unet_core.metrics.MetricAccumulator`; it is reset first.
        infer: how to get logits (default: ``model(images)``); patch-trained models
            evaluate whole cases through a sliding window.
    """
    sync_buffers(model)
    # The forward runs on the wrapped module: DDP's forward joins a buffer broadcast that
    # a rank without validation batches (fewer val cases than ranks) never calls, so
    # the others would wait for it forever. Every rank joins the reductions below.
    model = getattr(model, "module", model) if isinstance(model, DDP) else model
    model.eval()
    accumulator.reset()
    dtype = autocast_dtype(amp, device)
    loss_sum, batches = torch.zeros((), dtype=torch.float64, device=device), 0
    for batch in loader:
        images, masks = _to_device(batch, device, channels_last=False)
        with _autocast(device, dtype):
            logits = model(images) if infer is None else infer(model, images)
        logits = logits.float()
        accumulator.update(logits, masks)
        if loss_fn is not None:
            loss_sum += loss_fn(logits, masks).detach()  # summed on the device: no sync
            batches += 1
    rdev = _reduce_device(device)
    state = _reduce_sum(accumulator.state.to(rdev)).cpu()
    accumulator.state.copy_(state)
    metrics = {f"{prefix}{k}": v for k, v in accumulator.compute().items()}
    if loss_fn is not None:
        totals = torch.stack([loss_sum.cpu(), torch.tensor(float(batches), dtype=torch.float64)])
        totals = _reduce_sum(totals.to(rdev)).cpu()
        metrics[f"{prefix}loss"] = float(totals[0] / totals[1].clamp(min=1.0))
    return metrics


def is_improvement(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    """Whether `value` beats `best` by more than `min_delta` in direction `mode`."""
    if best is None:
        return True
    return value > best + min_delta if mode == "max" else value < best - min_delta


@dataclass
class Trainer:
    """Everything one training run needs, bound together so `fit` stays small.

    `schedule` is a `unet_core.engine.optim.Schedule`; `accumulator` a
    `unet_core.metrics.MetricAccumulator`; `generator` seeds augmentation (its state is
    checkpointed so a resumed run draws the same augmentations).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    loss_fn: nn.Module
    accumulator: MetricAccumulator
    train_loader: Iterable[Batch]
    val_loader: Iterable[Batch]
    cfg: TrainConfig
    device: torch.device
    scaler: torch.amp.GradScaler | None = None
    augment: Callable[[torch.Tensor, torch.Tensor, torch.Generator | None], Batch] | None = None
    generator: torch.Generator | None = None
    hooks: Hooks | None = None
    infer: Infer | None = None  # validation logits; None: model(images)
    ema: WeightEma | None = None  # the weight average; `fit` makes it when cfg.ema_decay is set

    def served_model(self) -> nn.Module:
        """The weights validation scores and checkpoints save as "model": the average
        when there is one, else the trained model."""
        return self.ema.served() if self.ema is not None else self.model

    def one_epoch(self, epoch: int, validate: bool = True) -> dict[str, float]:
        """Train one epoch, then validate if asked; returns `train_*` (and `val_*`) metrics."""
        loaders = (self.train_loader, self.val_loader) if validate else (self.train_loader,)
        for loader in loaders:
            # A new shuffle (sampler) or new patches (streaming dataset) per epoch.
            for part in (getattr(loader, "sampler", None), getattr(loader, "dataset", None)):
                if part is not None and hasattr(part, "set_epoch"):
                    part.set_epoch(epoch)
        augment = None
        if self.augment is not None:
            aug, gen = self.augment, self.generator
            augment = lambda images, masks: aug(images, masks, gen)  # noqa: E731
        metrics = train_one_epoch(
            self.model,
            self.train_loader,
            self.loss_fn,
            self.optimizer,
            self.cfg,
            device=self.device,
            scaler=self.scaler,
            schedule=self.schedule,
            augment=augment,
            hooks=self.hooks,
            ema=self.ema,
        )
        if validate:
            metrics.update(self.validate())
        metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        return metrics

    def validate(self) -> dict[str, float]:
        """`val_*` metrics of the served model on the whole validation split."""
        return evaluate(
            self.served_model(),
            self.val_loader,
            self.accumulator,
            device=self.device,
            loss_fn=self.loss_fn,
            amp=self.cfg.amp,
            infer=self.infer,
        )


def validates(epoch: int, cfg: TrainConfig) -> bool:
    """Whether `epoch` (0-based) validates: every `cfg.val_every` epochs, and the last."""
    return (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs


def fit(trainer: Trainer, resume: dict | None = None) -> FitResult:
    """Train for `trainer.cfg.epochs` epochs, validating every `val_every`, with early
    stopping (its patience counts validations).

    `hooks.on_epoch_end` runs after every epoch, validated or not (`EpochResult.validated`).

    Args:
        resume: a checkpoint dict from `capture_state`; training continues after its
            epoch with the same weights, optimizer, schedule, scaler and RNG states.
    """
    result, start_epoch, stale = FitResult(), 0, 0
    if trainer.cfg.ema_decay is not None and trainer.ema is None:
        # Made here, not in a builder: the model is on its device and wrapped by now.
        trainer.ema = WeightEma(unwrap(trainer.model), trainer.cfg.ema_decay)
    if resume is not None:
        start_epoch, stale = restore_state(trainer, resume, result)
    es = trainer.cfg.early_stopping
    for epoch in range(start_epoch, trainer.cfg.epochs):
        if es.enabled and stale >= es.patience:
            result.stopped_early = True  # a resumed run that had already stopped
            break
        started = time.perf_counter()
        validate = validates(epoch, trainer.cfg)
        metrics = trainer.one_epoch(epoch, validate)
        improved = False
        if validate:
            value = _monitored(metrics, es.monitor)
            improved, stale = _score(result, epoch, value, stale, es)
            trainer.schedule.epoch_end(value)
        stop = es.enabled and stale >= es.patience
        seconds = time.perf_counter() - started
        last = stop or epoch + 1 == trainer.cfg.epochs
        epoch_result = EpochResult(epoch, metrics, improved, seconds, validate, last)
        result.history.append(epoch_result)
        if trainer.hooks and trainer.hooks.on_epoch_end:
            trainer.hooks.on_epoch_end(epoch_result, capture_state(trainer, epoch, result, stale))
        if stop:
            result.stopped_early = True
            break
    return result


def _score(
    result: FitResult, epoch: int, value: float, stale: int, es: EarlyStoppingConfig
) -> tuple[bool, int]:
    """Whether a validation improved on the best (recorded in `result`); new stale count."""
    if is_improvement(value, result.best_metric, es.mode, es.min_delta):
        result.best_metric, result.best_epoch = value, epoch
        return True, 0
    return False, stale + 1


def _monitored(metrics: dict[str, float], key: str) -> float:
    if key not in metrics:
        raise KeyError(
            f"early_stopping.monitor={key!r} is not a metric; choose one of {sorted(metrics)}"
        )
    return metrics[key]
