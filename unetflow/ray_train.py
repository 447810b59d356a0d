"""Ray Train glue: run the engine's `fit` on a data-parallel `TorchTrainer`.

Rank 0 writes the checkpoint and logs epoch metrics; every rank reports, as Ray Train
V2 requires. Rerunning with the same run name resumes from the latest checkpoint.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from ray.train import (
    CheckpointConfig,
    CheckpointUploadMode,
    FailureConfig,
    LoggingConfig,
    RunConfig,
    ScalingConfig,
)

from unet_core.data import read_manifest, store
from unet_core.engine import (
    CHECKPOINT_FILE,
    CheckpointCadence,
    CheckpointWriteError,
    EpochResult,
    Hooks,
    fit,
    load_checkpoint,
    save_checkpoint,
)
from unetflow.builders import build_trainer, check_data, inference_spec
from unetflow.config import ExperimentConfig, ScalingSettings
from unetflow.errors import UsageError
from unetflow.progress import ProgressBoard, ProgressDisplay, ProgressFeed
from unetflow.ray_tracking import EpochMetricsLogger
from unetflow.storage import is_remote, ray_storage

HEALTH_CHECK_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
REPORT_POLL_S = "0.2"  # seconds between the controller's polls of the workers
# Ray Train's own INFO lines (worker group started, model moved, each checkpoint created)
# stay in its log files under the Ray session; the console shows its warnings and errors.
QUIET = LoggingConfig(log_level="WARNING")


@dataclass(frozen=True)
class RayTrainOutcome:
    """What the driver gets back from a Ray Train run."""

    run_name: str
    storage_path: str
    best_checkpoint: ray.train.Checkpoint
    best_metrics: dict[str, Any]
    history: list[dict[str, Any]]


def ensure_ray(num_cpus: int | None = None) -> None:
    """Connect to `RAY_ADDRESS`, or start a local Ray bound to 127.0.0.1 with token auth."""
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    ray.init(
        num_cpus=num_cpus,
        # The dashboard serves the state API that Ray Train's clean-up relies on.
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        _node_ip_address="127.0.0.1",
        log_to_driver=True,
    )


def _epoch_hook(
    cfg: ExperimentConfig,
    rank: int,
    extra: dict[str, str],
    device: torch.device,
    cadence: CheckpointCadence,
    feed: ProgressFeed | None = None,
) -> Hooks:
    """Every rank reports validated and checkpointed epochs; rank 0 writes the checkpoints
    (`checkpoint.every_epochs` / `every_minutes`, a new best and the last epoch always).

    Epochs that neither validate nor checkpoint report nothing: each report waits for
    every rank, and Ray Train's controller takes one report per worker per poll
    (`RAY_TRAIN_HEALTH_CHECK_INTERVAL_S`), so a report every short epoch stalled
    training. No worker talks to MLflow: the driver logs what the workers report
    (`ray_tracking.EpochMetricsLogger`).
    """
    monitor = cfg.train.early_stopping
    # Ray ranks every checkpoint by the monitored metric; one written on an epoch that
    # did not validate ranks last (Ray logs an error for a checkpoint without the key).
    unscored = {monitor.monitor: -math.inf if monitor.mode == "max" else math.inf}
    timed = cfg.checkpoint.every_minutes is not None

    def on_epoch_end(result: EpochResult, state: dict) -> None:
        if feed is not None:
            feed.on_epoch_end(result)
        # Wall clocks differ between ranks: rank 0 decides for all, or reports would
        # not pair up across ranks.
        checkpoint = (
            _same_on_all_ranks(cadence.due(result), device) if timed else cadence.due(result)
        )
        if not (checkpoint or result.validated):
            return
        metrics = {**result.metrics, "epoch": result.epoch, "is_best": int(result.improved)}
        metrics["validated"] = int(result.validated)
        if checkpoint and not result.validated:
            metrics.update(unscored)
        if rank != 0 or not checkpoint:
            ray.train.report(metrics, checkpoint=None)
            return
        # Ray uploads the folder in a background thread, then deletes it: training goes
        # on while the checkpoint travels to storage.
        folder = tempfile.mkdtemp(prefix="unetflow-ckpt-")
        save_checkpoint({**state, **extra}, Path(folder) / CHECKPOINT_FILE)
        ray.train.report(
            metrics,
            checkpoint=ray.train.Checkpoint.from_directory(folder),
            checkpoint_upload_mode=CheckpointUploadMode.ASYNC,
        )

    return Hooks(on_epoch_end=on_epoch_end, on_step=feed.on_step if feed else None)


def _same_on_all_ranks(flag: bool, device: torch.device) -> bool:
    """Rank 0's `flag` on every rank (one tiny broadcast; NCCL needs a CUDA tensor)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    where = device if dist.get_backend() == "nccl" else torch.device("cpu")
    value = torch.tensor([int(flag)], device=where)
    dist.broadcast(value, src=0)
    return bool(value.item())


def require_shared_storage(storage_path: str, shared: bool = False, fix: str | None = None) -> None:
    """Refuse a local checkpoint folder on a multi-node cluster, before any worker starts.

    Each node would write its own folder: rank 0's checkpoints land on one node, and a
    restarted worker group on another node finds none and starts over.

    Args:
        fix: what to tell the user instead of the `checkpoint.*` settings.
    """
    if is_remote(storage_path) or shared:
        return
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    if nodes > 1:
        fix = fix or (
            "set checkpoint.storage_path: s3://BUCKET/PREFIX (shared storage), or "
            "checkpoint.storage_shared: true if every node mounts that folder"
        )
        raise UsageError(
            f"storage {storage_path!r} is a local folder, but the Ray cluster has {nodes} "
            f"nodes; {fix}"
        )


def say(line: str) -> None:
    """One line to the worker's stdout, which Ray forwards to the driver once.

    Ray Train V2 patches `print` in its workers to log each line and, because a Ray
    worker's `sys.stdout` is a wrapper, to print it as well: every line reached the
    driver twice. Writing to the stream directly passes neither.
    """
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def checkpoint_extras(
    cfg: ExperimentConfig, data_dir: str | Path, options: dict | None = None
) -> dict[str, str]:
    """The config and inference spec, so a checkpoint alone can predict (`unetflow predict`)."""
    spec = inference_spec(cfg, read_manifest(data_dir, options))
    return {"config": cfg.model_dump_json(), "inference": spec.to_json()}


def train_worker(payload: dict[str, Any]) -> None:
    """The per-worker training function (runs inside each Ray Train worker)."""
    cfg = ExperimentConfig.model_validate_json(payload["config"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    # A folder or URI that this worker opens itself; `data_options` names the endpoint
    # only (credentials come from the worker's own environment).
    data, options = payload["data_dir"], payload.get("data_options")
    trainer = build_trainer(cfg, data, device, rank, world, options)
    trainer.model = ray.train.torch.prepare_model(trainer.model)
    quiet_reports()
    cadence = CheckpointCadence(cfg.checkpoint.every_epochs, cfg.checkpoint.every_minutes)
    resume = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as ckpt_dir:
            resume = load_checkpoint(Path(ckpt_dir) / CHECKPOINT_FILE, map_location=device)
        cadence.resumed_at(resume["epoch"])
        if rank == 0:
            say(f"resuming after epoch {resume['epoch'] + 1} from {checkpoint.path}")
    feed = None
    if rank == 0 and payload.get("progress") is not None:
        feed = ProgressFeed(payload["progress"], cfg.train.epochs, len(trainer.train_loader))
        feed.started(0 if resume is None else resume["epoch"] + 1)
    extra = checkpoint_extras(cfg, data, options)
    trainer.hooks = _epoch_hook(cfg, rank, extra, device, cadence, feed)
    fit(trainer, resume)


def quiet_reports() -> None:
    """Keep Ray Train's per-report line (`Reporting training result ...`, one per worker
    per report) at debug level: the driver's progress display shows what a person needs."""
    from ray.train.v2._internal.execution import context

    # Ray names that logger after its file, not its module.
    logging.getLogger(context.__file__).setLevel(logging.WARNING)


def scaling_config(scaling: ScalingSettings) -> ScalingConfig:
    """Workers, their resources and placement, as the config's `scaling` section asks."""
    resources = {"CPU": scaling.cpus_per_worker, **scaling.resources_per_worker}
    if scaling.use_gpu:
        resources["GPU"] = scaling.gpus_per_worker
    return ScalingConfig(
        num_workers=scaling.num_workers,
        use_gpu=scaling.use_gpu,
        resources_per_worker=resources,
        placement_strategy=scaling.placement_strategy,
    )


def torch_trainer(
    cfg: ExperimentConfig, data_dir: str | Path, run_config: RunConfig, progress: Any = None
) -> ray.train.torch.TorchTrainer:
    """A `TorchTrainer` whose workers run `train_worker` on `cfg` (training and Tune).

    Args:
        progress: a `ProgressBoard` actor that rank 0 posts its progress to; None: none.
    """
    # The controller takes one report per worker per poll, and a worker's next report
    # waits for that: Ray's 2 s default made every short epoch last 2 s. Ray hands this
    # variable on from the driver to the controller.
    os.environ.setdefault(HEALTH_CHECK_ENV, REPORT_POLL_S)
    return ray.train.torch.TorchTrainer(
        train_worker,
        train_loop_config={
            "config": cfg.model_dump_json(),
            # Workers open the data themselves: a folder every node can read, or a URI.
            "data_dir": store.normalise(data_dir),
            "data_options": store.default_options(data_dir),
            "progress": progress,
        },
        scaling_config=scaling_config(cfg.scaling),
        run_config=run_config,
    )


def fit_with_ray(
    cfg: ExperimentConfig,
    data_dir: str | Path,
    run_name: str,
    storage_path: str,
    tracking: dict[str, str] | None = None,
) -> RayTrainOutcome:
    """Train `cfg` on a `TorchTrainer`; returns the best checkpoint and per-epoch history.

    Args:
        data_dir: the prepared data set: a folder every node can read, or
            ``s3://bucket/prefix`` (each worker streams its own patches from it).
        run_name: deterministic name; rerunning with it resumes from the latest checkpoint.
        tracking: {"uri", "run_id"} of the MLflow run that the driver logs epoch metrics to.
    """
    check_data(cfg, data_dir)  # bad data fails here, before any worker starts
    check_writable(storage_path)
    ensure_ray(num_cpus=None if os.environ.get("RAY_ADDRESS") else max(2, os.cpu_count() or 2))
    require_shared_storage(storage_path, cfg.checkpoint.storage_shared)
    path, filesystem = ray_storage(storage_path)
    monitor = cfg.train.early_stopping
    run_config = RunConfig(
        name=run_name,
        storage_path=path,
        storage_filesystem=filesystem,
        checkpoint_config=CheckpointConfig(
            num_to_keep=cfg.checkpoint.num_to_keep,
            checkpoint_score_attribute=monitor.monitor,
            checkpoint_score_order=monitor.mode,
        ),
        failure_config=FailureConfig(max_failures=cfg.checkpoint.max_failures),
        logging_config=QUIET,
        # Epoch metrics reach MLflow from the driver's controller, not from a worker.
        callbacks=[EpochMetricsLogger(tracking["uri"], tracking["run_id"])] if tracking else [],
    )
    board = ProgressBoard.remote()
    trainer = torch_trainer(cfg, data_dir, run_config, progress=board)
    try:
        with ProgressDisplay(board):
            result = trainer.fit()
    except ray.train.TrainingFailedError as err:
        clear = _storage_error(err, storage_path)
        if clear is None:
            raise
        raise clear from err
    finally:
        ray.kill(board)
    best = result.get_best_checkpoint(metric=monitor.monitor, mode=monitor.mode)
    if best is None:
        raise RuntimeError(f"Ray run {run_name} reported no checkpoint; see its logs in {path}")
    best_metrics = next(m for c, m in result.best_checkpoints if c.path == best.path)
    return RayTrainOutcome(run_name, storage_path, best, best_metrics, _history(result))


# A storage that cannot take a checkpoint: full, read-only, no permission, over quota.
STORAGE_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT)


def check_writable(storage_path: str) -> None:
    """Refuse a local checkpoint folder that cannot be written, before any worker starts."""
    if is_remote(storage_path):
        return
    folder = Path(storage_path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise CheckpointWriteError(
            f"checkpoint folder {storage_path} is not writable ({err.strerror}); set "
            "checkpoint.storage_path to a writable folder or free space there"
        ) from err


def _storage_error(err: Exception, storage_path: str) -> CheckpointWriteError | None:
    """One clear line when Ray Train failed because its storage refused a write.

    Ray reports it as a controller or worker error whose text holds pyarrow's
    `[Errno N]`; the checkpoints that were written before are intact (Ray registers a
    checkpoint only after its upload completed), so a rerun resumes from the last one.
    """
    codes = {int(code) for code in re.findall(r"\[Errno (\d+)\]", str(err))}
    code = next((c for c in STORAGE_ERRNOS if c in codes), None)
    if code is None:
        return None
    return CheckpointWriteError(
        f"cannot write checkpoints to {storage_path}: {os.strerror(code)}; free space or "
        "make it writable, then rerun the same command: it resumes from the last checkpoint"
    )


def _history(result: ray.train.Result) -> list[dict[str, Any]]:
    """Every epoch's metrics, from the latest checkpoint: Ray Train V2 keeps the metrics
    of checkpointed reports only, and epochs between checkpoints report nothing."""
    if result.checkpoint is None:
        return []
    with result.checkpoint.as_directory() as folder:
        return load_checkpoint(Path(folder) / CHECKPOINT_FILE)["history"]
