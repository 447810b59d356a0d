"""Build the engine's `Trainer` from an `ExperimentConfig`.

Shared by Ray Train workers, Tune trials and local runs, so all of them train the same
way from the same config.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler

from unet_core.augment import BatchAugmenter
from unet_core.data import Manifest, PreparedDataset
from unet_core.engine import Schedule, Trainer, build_optimizer
from unet_core.engine.loop import autocast_dtype
from unet_core.engine.samplers import ShardSampler
from unet_core.metrics import MetricAccumulator
from unet_core.models import create_model
from unet_core.package import InferenceSpec
from unetflow.config import ExperimentConfig


def make_loaders(
    cfg: ExperimentConfig, data_dir: Path, rank: int, world_size: int
) -> tuple[DataLoader, DataLoader]:
    """Train loader (shuffled, this rank's share) and validation loader (this rank's shard)."""
    train_set = PreparedDataset(data_dir, "train")
    val_set = PreparedDataset(data_dir, "val")
    train_sampler = DistributedSampler(
        train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=cfg.train.seed
    )
    common = {"batch_size": cfg.train.batch_size, "num_workers": cfg.train.loader_workers}
    train = DataLoader(train_set, sampler=train_sampler, drop_last=False, **common)
    val = DataLoader(val_set, sampler=ShardSampler(len(val_set), rank, world_size), **common)
    return train, val


def inference_spec(cfg: ExperimentConfig, manifest: Manifest) -> InferenceSpec:
    """How the trained model turns raw images into masks: the training set's statistics
    and the loss mode's decision rule (stored in checkpoints and model packages alike)."""
    return InferenceSpec(mean=manifest.mean, std=manifest.std, mode=cfg.loss.mode)


def make_accumulator(
    cfg: ExperimentConfig, threshold: float = InferenceSpec.threshold
) -> MetricAccumulator:
    """Metric sums matching the loss mode and the model's output channels; validation
    scores with the threshold a model is served with unless told otherwise."""
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
        model = model.to(memory_format=torch.channels_last)
    train_loader, val_loader = make_loaders(cfg, data_dir, rank, world_size)
    optimizer = build_optimizer(model, cfg.optim)
    steps = -(-len(train_loader) // cfg.train.accumulate_steps)
    schedule = Schedule(optimizer, cfg.scheduler, steps, cfg.train.epochs)
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
