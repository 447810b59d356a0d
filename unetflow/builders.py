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
from unet_core.data import DataError, Manifest, PreparedDataset, read_manifest
from unet_core.data.node_cache import NodeCache
from unet_core.data.prepared import normalization_for
from unet_core.data.streaming import PatchStream
from unet_core.engine import Schedule, Trainer, build_optimizer
from unet_core.engine.loop import autocast_dtype, memory_format, optimizer_steps
from unet_core.engine.samplers import EpochSampler, ShardSampler
from unet_core.inference import sliding_window
from unet_core.metrics import MetricAccumulator
from unet_core.models import create_model
from unet_core.package import InferenceSpec
from unetflow.config import ExperimentConfig


def check_data(cfg: ExperimentConfig, data: str | Path, options: dict | None = None) -> None:
    """Refuse data that does not fit the config, on the driver, before any worker starts.

    Raises:
        DataError: dimensions or channels differ from the model's, no train cases, or
            cases of different shapes without `data.patch_size`.
    """
    manifest = read_manifest(data, options)
    where = f"{data} (data.path)"
    if manifest.spatial_dims != cfg.model.spatial_dims:
        raise DataError(
            where,
            f"holds {manifest.spatial_dims}D cases but model.spatial_dims is "
            f"{cfg.model.spatial_dims}; make them agree",
        )
    if manifest.in_channels != cfg.model.in_channels:
        raise DataError(
            where,
            f"images have {manifest.in_channels} channel(s) but model.in_channels is "
            f"{cfg.model.in_channels}; set model.in_channels: {manifest.in_channels}",
        )
    if manifest.count("train") == 0:
        raise DataError(where, "has no train cases; re-prepare it with a train split")
    if cfg.data.patch_size is None and not manifest.uniform_shape:
        raise DataError(
            where,
            "cases differ in shape, so whole images cannot be batched; "
            "set data.patch_size to train on patches",
        )


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
    data: str | Path,
    rank: int,
    world_size: int,
    options: dict | None = None,
    device: torch.device | None = None,
) -> tuple[DataLoader, DataLoader]:
    """This rank's train loader and its shard of the validation cases.

    `data` is a folder or URI that this process opens itself (a worker never relies on a
    path that exists only on the driver). With `data.patch_size` the train loader
    streams this rank's own patches (`PatchStream`) and validation runs one whole case
    per batch; without it, whole images are shuffled as before. For a CUDA `device` the
    batches come in pinned memory, so the loop's non-blocking copies overlap compute.
    """
    device = device or torch.device("cpu")
    workers = loader_workers(cfg.train.loader_workers, device)
    common = {
        "num_workers": workers,
        "pin_memory": device.type == "cuda",
        "persistent_workers": workers > 0,  # no worker start-up cost every epoch
        # zarr and fsspec read through an event-loop thread; a forked worker inherits that
        # loop dead (and any lock it held), so loader workers are spawned instead.
        "multiprocessing_context": "spawn" if workers > 0 else None,
    }
    val_set = _whole_cases(cfg, data, "val", options, cfg.data.cache_mb / 2)
    val_sampler = ShardSampler(len(val_set), rank, world_size)
    if cfg.data.patch_size is None:
        train_set = _whole_cases(cfg, data, "train", options, cfg.data.cache_mb)
        if not train_set.manifest.uniform_shape:
            raise DataError(
                train_set.store.root,
                "cases differ in shape, so whole images cannot be batched; "
                "set data.patch_size to train on patches",
            )
        train_sampler = whole_image_sampler(cfg, len(train_set), rank, world_size)
        batch = {"batch_size": cfg.train.batch_size, **common}
        train = DataLoader(train_set, sampler=train_sampler, drop_last=False, **batch)
        return train, DataLoader(val_set, sampler=val_sampler, **batch)
    stream = patch_stream(cfg, data, rank, world_size, options)
    train = DataLoader(stream, batch_size=cfg.train.batch_size, **common)
    return train, DataLoader(val_set, sampler=val_sampler, batch_size=1, **common)


def whole_image_sampler(
    cfg: ExperimentConfig, cases: int, rank: int, world_size: int
) -> EpochSampler | DistributedSampler:
    """This rank's train cases per epoch: `steps_per_epoch` batches (several shuffled
    passes when the plan's epoch floor asks for more than one), or one pass when unset."""
    steps, seed = cfg.train.steps_per_epoch, cfg.train.seed
    if steps is None:
        return DistributedSampler(
            range(cases), num_replicas=world_size, rank=rank, shuffle=True, seed=seed
        )
    return EpochSampler(cases, steps * cfg.train.batch_size, rank, world_size, seed)


def _whole_cases(
    cfg: ExperimentConfig, data: str | Path, split: str, options: dict | None, cache_mb: float
) -> PreparedDataset:
    """The whole cases of ``split``, read through this node's cache when remote."""
    return PreparedDataset(
        data,
        split,
        options=options,
        cache_mb=cache_mb,
        normalization=cfg.data.normalization,
        node_cache=node_cache(cfg),
    )


def patch_stream(
    cfg: ExperimentConfig, data: str | Path, rank: int, world_size: int, options: dict | None
) -> PatchStream:
    """This rank's patches: `steps_per_epoch` batches, or about one patch per train case
    per epoch over all ranks when unset."""
    steps = cfg.train.steps_per_epoch
    return PatchStream(
        str(data),
        "train",
        cfg.data.patch_size,
        samples=steps * cfg.train.batch_size if steps else None,
        foreground_fraction=cfg.data.foreground_fraction,
        seed=cfg.train.seed,
        rank=rank,
        world_size=world_size,
        cache_mb=cfg.data.cache_mb,
        options=options,
        normalization=cfg.data.normalization,
        node_cache=node_cache(cfg),
    )


def node_cache(cfg: ExperimentConfig) -> NodeCache | None:
    """The node's shared disk cache of remote cases (None when `node_cache_gb` is 0).

    Built on the worker: a None folder resolves to that node's temp dir, not the
    driver's. A local data set ignores it (it is read in place)."""
    if cfg.data.node_cache_gb <= 0:
        return None
    return NodeCache(cfg.data.node_cache_dir, int(cfg.data.node_cache_gb * 1e9))


def sliding_window_infer(patch: tuple[int, ...]):
    """Validation logits of whole cases, tiled with the training patch size.

    Runs the wrapped module, not the DDP wrapper: ranks hold different numbers of
    validation cases, and no collective may depend on how many each one has.
    """

    def infer(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        return sliding_window(getattr(model, "module", model), images, patch)

    return infer


def inference_spec(cfg: ExperimentConfig, manifest: Manifest) -> InferenceSpec:
    """How the trained model turns raw images into masks: the training's normalisation
    and the loss mode's decision rule (stored in checkpoints and model packages alike)."""
    norm = normalization_for(manifest, cfg.data.normalization)
    return InferenceSpec(
        mean=norm.mean or manifest.mean,
        std=norm.std or manifest.std,
        mode=cfg.loss.mode,
        # A patch-trained model predicts whole cases through a sliding window of its patch.
        patch=cfg.data.patch_size,
        normalization=norm.mode,
        clip=norm.clip,
        target_spacing=manifest.target_spacing,
    )


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
    data_dir: str | Path,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
    options: dict | None = None,
) -> Trainer:
    """Model, optimizer, schedule, loss, metrics, loaders and augmentation for one rank.

    Args:
        data_dir: the prepared data set, a folder or URI (``s3://bucket/prefix``).
        options: fsspec storage options for a URI (None: endpoint from the environment).
    """
    torch.manual_seed(cfg.train.seed)  # same initial weights on every rank
    model = create_model(cfg.model).to(device)
    if cfg.train.channels_last:
        # 2D models take NHWC, 3D models NDHWC (channels_last alone is rank 4 only).
        model = model.to(memory_format=memory_format(cfg.model.spatial_dims + 2))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cfg.train.cudnn_benchmark
    train_loader, val_loader = make_loaders(cfg, data_dir, rank, world_size, options, device)
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
        infer=sliding_window_infer(cfg.data.patch_size) if cfg.data.patch_size else None,
    )
