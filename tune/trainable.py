"""The Tune trial: resolve the sampled config, train with the engine, report every
validation (every `train.val_every` epochs; schedulers such as ASHA count reports).

A single-worker trial trains in the trial process (`tune.trial.train_in_process`,
reporting through `ray.tune.report` after every validation). A trial whose config asks for
several workers (`scaling.num_workers > 1`) builds a Ray Train `TorchTrainer` inside the
trial (Train V2: `Tuner(trainer)` is gone) and forwards its reports to Tune.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray.tune

from tune.search_config import TrialSetup
from tune.space import ParamSpec, resolve_config
from tune.trial import model_cost, train_in_process, trial_device
from unet_core.engine import CHECKPOINT_FILE, load_checkpoint
from unetflow.config import ExperimentConfig, tracked_params

if TYPE_CHECKING:
    from tune.mlflow_logging import TrialLogger


def train_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """Tune function trainable. `config` holds the sampled dotted keys."""
    base = ExperimentConfig.model_validate_json(setup.base)
    specs = {k: ParamSpec.model_validate(v) for k, v in setup.specs.items()}
    cfg = resolve_config(base, config, specs)
    data_dir = Path(setup.data_dir)
    ctx = ray.tune.get_context()
    logger = None
    if setup.tracking is not None:
        # Imported here: mlflow costs every trial process ~0.5 s of start-up, untracked too.
        from tune.mlflow_logging import TrialLogger

        logger = TrialLogger(setup.tracking, ctx.get_trial_id(), ctx.get_trial_name())
        logger.log_params({**tracked_params(cfg), **{f"sampled.{k}": v for k, v in config.items()}})
    costs = model_cost(cfg, data_dir, latency=setup.latency)
    if cfg.scaling.num_workers > 1:
        _fit_multi_worker(cfg, data_dir, costs, setup, ctx.get_trial_id(), logger)
    else:
        _fit_single_worker(cfg, data_dir, costs, logger)


def _fit_single_worker(
    cfg: ExperimentConfig, data_dir: Path, costs: dict[str, float], logger: TrialLogger | None
) -> None:
    def report(metrics: dict[str, float], checkpoint_dir: Path) -> None:
        if logger is not None:
            logger.log_epoch(metrics, int(metrics["epoch"]))
        ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(checkpoint_dir))

    resume = None
    checkpoint = ray.tune.get_checkpoint()
    if checkpoint is not None:  # a restored or restarted trial continues, not restarts
        with checkpoint.as_directory() as ckpt_dir:
            resume = load_checkpoint(
                Path(ckpt_dir) / CHECKPOINT_FILE, map_location=trial_device(cfg)
            )
    train_in_process(cfg, data_dir, costs, report, resume)
    if logger is not None:
        logger.finish()


def _fit_multi_worker(
    cfg: ExperimentConfig,
    data_dir: Path,
    costs: dict[str, float],
    setup: TrialSetup,
    trial_id: str,
    logger: TrialLogger | None,
) -> None:
    """A data-parallel `TorchTrainer` inside the trial; its rank-0 reports reach Tune."""
    from ray.train import CheckpointConfig, RunConfig

    from unetflow.ray_tracking import EpochMetricsLogger
    from unetflow.ray_train import torch_trainer
    from unetflow.storage import ray_storage

    storage_path, filesystem = ray_storage(setup.storage)  # s3:// needs its filesystem
    callbacks = [_report_callback(costs)]
    if logger is not None and setup.tracking is not None:
        # Epoch metrics logged by the trainer's controller, not by rank 0.
        callbacks.append(EpochMetricsLogger(setup.tracking.uri, logger.run_id))
    run_config = RunConfig(
        # The same name on a restarted trial resumes the Ray Train run's checkpoint.
        name=f"train-{trial_id}",
        storage_path=storage_path,
        storage_filesystem=filesystem,
        checkpoint_config=CheckpointConfig(num_to_keep=1),
        callbacks=callbacks,
    )
    trainer = torch_trainer(cfg, data_dir, run_config)
    trainer.fit()
    if logger is not None:
        logger.finish()


def _report_callback(costs: dict[str, float]) -> Any:
    """Ray's `TuneReportCallback`, with the trial's cost metrics added to every report."""
    from ray.tune.integration.ray_train import TuneReportCallback

    class _WithCosts(TuneReportCallback):
        def after_report(self, run_context: Any, metrics: list, checkpoint: Any) -> None:
            if not metrics[0].get("validated", 1):
                return  # a checkpoint between validations: nothing for a scheduler to judge
            super().after_report(run_context, [{**metrics[0], **costs}], checkpoint)

    return _WithCosts()
