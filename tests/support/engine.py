"""A tiny engine `Trainer` on random blobs, for the engine's loop, resume and EMA tests."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from unet_core.engine import (
    EarlyStoppingConfig,
    OptimConfig,
    Schedule,
    SchedulerConfig,
    TrainConfig,
    Trainer,
    build_optimizer,
)
from unet_core.losses import create_loss
from unet_core.metrics import MetricAccumulator
from unet_core.models import create_model


def tiny_data(n: int = 12, size: int = 16, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    masks = (torch.rand(n, size, size, generator=g) > 0.6).long()
    images = masks[:, None].float() * 2 - 1 + 0.3 * torch.randn(n, 1, size, size, generator=g)
    return TensorDataset(images, masks)


def tiny_trainer(epochs: int, augment: bool = False, patience: int = 50) -> Trainer:
    torch.manual_seed(0)
    model = create_model("unet", base_channels=4, depth=2)
    cfg = TrainConfig(
        epochs=epochs, batch_size=4, early_stopping=EarlyStoppingConfig(patience=patience)
    )
    opt = build_optimizer(model, OptimConfig(lr=1e-2))
    data = tiny_data()
    # Shuffling keyed on (seed, epoch), as in real runs, so a resumed run sees the same order.
    sampler = DistributedSampler(data, num_replicas=1, rank=0)
    train = DataLoader(data, batch_size=4, sampler=sampler)
    val = DataLoader(tiny_data(seed=1), batch_size=4)
    aug = None
    if augment:
        from unet_core.augment import AugmentConfig, BatchAugmenter

        aug = BatchAugmenter(AugmentConfig.from_strength(0.5), spatial_dims=2)
    return Trainer(
        model=model,
        optimizer=opt,
        schedule=Schedule(opt, SchedulerConfig(name="cosine", warmup_epochs=1), len(train), epochs),
        loss_fn=create_loss("dice_bce"),
        accumulator=MetricAccumulator(num_classes=1, mode="binary"),
        train_loader=train,
        val_loader=val,
        cfg=cfg,
        device=torch.device("cpu"),
        augment=aug,
        generator=torch.Generator().manual_seed(5),
    )
