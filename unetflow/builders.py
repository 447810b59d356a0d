"""Build the engine's `Trainer` from an `ExperimentConfig`.

Shared by Ray Train workers, Tune trials and local runs, so all of them train the same
way from the same config.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler

from unet_core.augment import BatchAugmenter
from unet_core.data import PreparedDataset
from unet_core.engine import Schedule, Trainer, build_optimizer
from unet_core.engine.loop import autocast_dtype, memory_format, optimizer_steps
from unet_core.engine.samplers import ShardSampler
from unet_core.metrics import MetricAccumulator
from unet_core.models import create_model
from unetflow.config import ExperimentConfig


def loader_workers(configured: int | None, device: torch.device) -> int:
    """DataLoader worker processes: `configured`, else a default that suits `device`.

    On CUDA, decoding and augmenting in the training process starves the GPU: up to 4
    workers, leaving one of this process's CPUs to the training loop. On CPU the
    training loop needs the cores itself (and Ray gives each worker few): none.
    """
    if configured is not None:
        return configured
    if device.type != "cuda":
        return 0
    return max(0, min(4, len(os.sched_getaffinity(0)) - 1))


def make_loaders(
    cfg: ExperimentConfig,
    data_dir: Path,
    rank: int,
    world_size: int,
    device: torch.device | None = None,
) -> tuple[DataLoader, DataLoader]:
    """Train loader (shuffled, this rank's share) and validation loader (this rank's shard).

    For a CUDA `device` the batches come in pinned memory, so the loop's non-blocking
    copies overlap with compute.
    """
    device = device or torch.device("cpu")
    train_set = PreparedDataset(data_dir, "train")
    val_set = PreparedDataset(data_dir, "val")
    train_sampler = DistributedSampler(
        train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=cfg.train.seed
    )
    workers = loader_workers(cfg.train.loader_workers, device)
    common = {
        "batch_size": cfg.train.batch_size,
        "num_workers": workers,
        "pin_memory": device.type == "cuda",
        "persistent_workers": workers > 0,  # no worker start-up cost every epoch
    }
    train = DataLoader(train_set, sampler=train_sampler, drop_last=False, **common)
    val = DataLoader(val_set, sampler=ShardSampler(len(val_set), rank, world_size), **common)
    return train, val


def make_accumulator(cfg: ExperimentConfig, threshold: float = 0.5) -> MetricAccumulator:
    """Metric sums matching the loss mode and the model's output channels."""
    return MetricAccumulator(cfg.model.out_channels, mode=cfg.loss.mode, threshold=threshold)


def build_loss(cfg: ExperimentConfig) -> torch.nn.Module:
    """The configured loss; deep supervision follows the model (it decides the outputs)."""
    update = {"deep_supervision": cfg.model.deep_supervision}
    return cfg.loss.model_copy(update=update).build()


def build_trainer(
    cfg: ExperimentConfig,
    data_dir: Path,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
) -> Trainer:
    """Model, optimizer, schedule, loss, metrics, loaders and augmentation for one rank."""
    torch.manual_seed(cfg.train.seed)  # same initial weights on every rank
    model = create_model(cfg.model).to(device)
    if cfg.train.channels_last:
        # 2D models take NHWC, 3D models NDHWC (channels_last alone is rank 4 only).
        model = model.to(memory_format=memory_format(cfg.model.spatial_dims + 2))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cfg.train.cudnn_benchmark
    train_loader, val_loader = make_loaders(cfg, data_dir, rank, world_size, device)
    optimizer = build_optimizer(model, cfg.optim)
    steps = optimizer_steps(len(train_loader), cfg.train.accumulate_steps)
    schedule = Schedule(optimizer, cfg.scheduler, steps, cfg.train.epochs)
    if cfg.train.compile:
        # After the optimizer took the parameters; checkpoints unwrap `_orig_mod`.
        model = torch.compile(model)
    fp16 = autocast_dtype(cfg.train.amp, device) == torch.float16
    generator = torch.Generator(device=device).manual_seed(cfg.train.seed + 1000 * rank)
    return Trainer(
        model=model,
        optimizer=optimizer,
        schedule=schedule,
        loss_fn=build_loss(cfg),
        accumulator=make_accumulator(cfg),
        train_loader=train_loader,
        val_loader=val_loader,
        cfg=cfg.train,
        device=device,
        scaler=torch.amp.GradScaler(device.type) if fp16 else None,
        augment=BatchAugmenter(cfg.data.augment, cfg.model.spatial_dims),
        generator=generator,
    )
