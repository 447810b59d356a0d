"""The Tune trial: resolve the sampled config, train with the engine, report every epoch.

A single-worker trial trains in the trial process (`build_trainer` + `fit`, reporting
through `ray.tune.report` from the epoch hook). A trial whose config asks for several
workers (`scaling.num_workers > 1`) builds a Ray Train `TorchTrainer` inside the trial
(Train V2: `Tuner(trainer)` is gone) and forwards its reports to Tune.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import ray.tune
import torch

from tune.mlflow_logging import TrialLogger
from tune.space import ParamSpec, resolve_config
from unet_core.data import read_manifest
from unet_core.engine import (
    CHECKPOINT_FILE,
    EpochResult,
    Hooks,
    fit,
    load_checkpoint,
    save_checkpoint,
)
from unet_core.models import create_model, describe
from unetflow.builders import build_trainer
from unetflow.config import ExperimentConfig, flatten

COST_KEYS = ("params", "flops", "latency_ms")


def model_cost(cfg: ExperimentConfig, data_dir: Path, latency: bool = False) -> dict[str, float]:
    """Parameters, forward FLOPs per image and (optionally) CPU latency per image in ms."""
    manifest = read_manifest(data_dir)
    model = create_model(cfg.model)
    shape = (1, cfg.model.in_channels, *manifest.spatial_shape)
    info = describe(model, shape)
    out = {"params": float(info.parameters), "flops": float(info.flops_per_sample)}
    if latency:
        out["latency_ms"] = _latency_ms(model, shape)
    return out


def _latency_ms(model: torch.nn.Module, shape: tuple[int, ...], repeats: int = 5) -> float:
    model.eval()
    x = torch.zeros(shape)
    with torch.no_grad():
        model(x)  # warm-up: first call allocates
        started = time.perf_counter()
        for _ in range(repeats):
            model(x)
    return 1000 * (time.perf_counter() - started) / repeats


def train_trial(config: dict[str, Any], setup: dict[str, Any]) -> None:
    """Tune function trainable. `config` holds the sampled dotted keys.

    Args:
        setup: {"base": ExperimentConfig JSON, "specs": {key: ParamSpec dict},
            "data_dir": absolute path, "tracking": {...} or None, "latency": bool,
            "storage": trial storage for multi-worker runs}.
    """
    base = ExperimentConfig.model_validate_json(setup["base"])
    specs = {k: ParamSpec.model_validate(v) for k, v in setup["specs"].items()}
    cfg = resolve_config(base, config, specs)
    data_dir = Path(setup["data_dir"])
    ctx = ray.tune.get_context()
    logger = None
    if setup.get("tracking"):
        logger = TrialLogger(setup["tracking"], ctx.get_trial_id(), ctx.get_trial_name())
        logger.log_params({**flatten(cfg), **{f"sampled.{k}": v for k, v in config.items()}})
    costs = model_cost(cfg, data_dir, latency=setup.get("latency", False))
    if cfg.scaling.num_workers > 1:
        _fit_multi_worker(cfg, data_dir, costs, setup, ctx.get_trial_id(), logger)
    else:
        _fit_single_worker(cfg, data_dir, costs, logger)


def _fit_single_worker(
    cfg: ExperimentConfig, data_dir: Path, costs: dict[str, float], logger: TrialLogger | None
) -> None:
    use_gpu = cfg.scaling.use_gpu and torch.cuda.is_available()
    device = torch.device("cuda" if use_gpu else "cpu")
    trainer = build_trainer(cfg, data_dir, device)

    def on_epoch_end(result: EpochResult, state: dict) -> None:
        metrics = {**result.metrics, **costs, "epoch": result.epoch}
        if logger is not None:
            logger.log_epoch(metrics, result.epoch)
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint({**state, "config": cfg.model_dump_json()}, Path(tmp) / CHECKPOINT_FILE)
            ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(tmp))

    trainer.hooks = Hooks(on_epoch_end=on_epoch_end)
    resume = None
    checkpoint = ray.tune.get_checkpoint()
    if checkpoint is not None:  # a restored or restarted trial continues, not restarts
        with checkpoint.as_directory() as ckpt_dir:
            resume = load_checkpoint(Path(ckpt_dir) / CHECKPOINT_FILE, map_location=device)
    fit(trainer, resume)
    if logger is not None:
        logger.finish()


def _fit_multi_worker(
    cfg: ExperimentConfig,
    data_dir: Path,
    costs: dict[str, float],
    setup: dict[str, Any],
    trial_id: str,
    logger: TrialLogger | None,
) -> None:
    """A data-parallel `TorchTrainer` inside the trial; its rank-0 reports reach Tune."""
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from unetflow.ray_train import train_worker

    scaling = cfg.scaling
    resources = {"CPU": scaling.cpus_per_worker, **scaling.resources_per_worker}
    if scaling.use_gpu:
        resources["GPU"] = scaling.gpus_per_worker
    tracking = None
    if logger is not None:
        tracking = {"uri": setup["tracking"]["uri"], "run_id": logger.run_id}
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"config": cfg.model_dump_json(), "data_dir": str(data_dir),
                           "tracking": tracking},
        scaling_config=ScalingConfig(
            num_workers=scaling.num_workers, use_gpu=scaling.use_gpu,
            resources_per_worker=resources, placement_strategy=scaling.placement_strategy,
        ),
        run_config=RunConfig(
            # The same name on a restarted trial resumes the Ray Train run's checkpoint.
            name=f"train-{trial_id}",
            storage_path=setup["storage"],
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            callbacks=[_report_callback(costs)],
        ),
    )  # fmt: skip
    trainer.fit()
    if logger is not None:
        logger.finish()


def _report_callback(costs: dict[str, float]) -> Any:
    """Ray's `TuneReportCallback`, with the trial's cost metrics added to every report."""
    from ray.tune.integration.ray_train import TuneReportCallback

    class _WithCosts(TuneReportCallback):
        def after_report(self, run_context: Any, metrics: list, checkpoint: Any) -> None:
            super().after_report(run_context, [{**metrics[0], **costs}], checkpoint)

    return _WithCosts()
