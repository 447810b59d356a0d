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

from unet_core.engine.checkpoint import capture_state, restore_state
from unet_core.engine.config import TrainConfig
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
    on_step: Callable[[int, float], None] | None = None


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """Resolve the AMP setting to a dtype; None means full precision."""
    if amp == "off" or device.type != "cuda":
        # CPU autocast is slower than fp32 for convolutions on most CPUs: off by default.
        return None if amp in ("off", "auto") else _DTYPES[amp]
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return _DTYPES[amp]


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _to_device(batch: Batch, device: torch.device, channels_last: bool) -> Batch:
    images, masks = batch
    images = images.to(device, non_blocking=True)
    if channels_last and images.ndim in (4, 5):
        fmt = torch.channels_last if images.ndim == 4 else torch.channels_last_3d
        images = images.contiguous(memory_format=fmt)
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
) -> dict[str, float]:
    """Run one pass over `loader`; returns the global mean training loss as `train_loss`."""
    model.train()
    dtype = autocast_dtype(cfg.amp, device)
    totals = torch.zeros(2, dtype=torch.float64)  # loss sum, batch count
    optimizer.zero_grad(set_to_none=True)
    for step, batch in enumerate(loader):
        images, masks = _to_device(batch, device, cfg.channels_last)
        if augment is not None:
            images, masks = augment(images, masks)
        with _autocast(device, dtype):
            loss = loss_fn(model(images), masks)
        scaled = loss / cfg.accumulate_steps
        (scaler.scale(scaled) if scaler else scaled).backward()
        if (step + 1) % cfg.accumulate_steps == 0:
            _optimizer_step(model, optimizer, cfg, scaler)
            if schedule is not None:
                schedule.step()
        totals += torch.tensor([loss.detach().float().item(), 1.0], dtype=torch.float64)
        if hooks and hooks.on_step:
            hooks.on_step(step, loss.item())
    totals = _reduce_sum(totals.to(_reduce_device(device))).cpu()
    return {"train_loss": float(totals[0] / totals[1].clamp(min=1.0))}


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
    totals = torch.zeros(2, dtype=torch.float64)
    for batch in loader:
        images, masks = _to_device(batch, device, channels_last=False)
        with _autocast(device, dtype):
            logits = model(images) if infer is None else infer(model, images)
        logits = logits.float()
        accumulator.update(logits, masks)
        if loss_fn is not None:
            totals += torch.tensor([loss_fn(logits, masks).item(), 1.0], dtype=torch.float64)
    rdev = _reduce_device(device)
    state = _reduce_sum(accumulator.state.to(rdev)).cpu()
    accumulator.state.copy_(state)
    metrics = {f"{prefix}{k}": v for k, v in accumulator.compute().items()}
    if loss_fn is not None:
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

    def one_epoch(self, epoch: int) -> dict[str, float]:
        """Train one epoch, then validate; returns `train_*` and `val_*` metrics."""
        for loader in (self.train_loader, self.val_loader):
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
        )
        metrics.update(
            evaluate(
                self.model,
                self.val_loader,
                self.accumulator,
                device=self.device,
                loss_fn=self.loss_fn,
                amp=self.cfg.amp,
                infer=self.infer,
            )
        )
        metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        return metrics


def fit(trainer: Trainer, resume: dict | None = None) -> FitResult:
    """Train for `trainer.cfg.epochs` epochs with early stopping.

    Args:
        resume: a checkpoint dict from `capture_state`; training continues after its
            epoch with the same weights, optimizer, schedule, scaler and RNG states.
    """
    result, start_epoch, stale = FitResult(), 0, 0
    if resume is not None:
        start_epoch, stale = restore_state(trainer, resume, result)
    es = trainer.cfg.early_stopping
    for epoch in range(start_epoch, trainer.cfg.epochs):
        if es.enabled and stale >= es.patience:
            result.stopped_early = True  # a resumed run that had already stopped
            break
        started = time.perf_counter()
        metrics = trainer.one_epoch(epoch)
        value = _monitored(metrics, es.monitor)
        improved = is_improvement(value, result.best_metric, es.mode, es.min_delta)
        if improved:
            result.best_metric, result.best_epoch, stale = value, epoch, 0
        else:
            stale += 1
        trainer.schedule.epoch_end(value)
        epoch_result = EpochResult(epoch, metrics, improved, time.perf_counter() - started)
        result.history.append(epoch_result)
        if trainer.hooks and trainer.hooks.on_epoch_end:
            trainer.hooks.on_epoch_end(epoch_result, capture_state(trainer, epoch, result, stale))
        if es.enabled and stale >= es.patience:
            result.stopped_early = True
            break
    return result


def _monitored(metrics: dict[str, float], key: str) -> float:
    if key not in metrics:
        raise KeyError(
            f"early_stopping.monitor={key!r} is not a metric; choose one of {sorted(metrics)}"
        )
    return metrics[key]
