"""One tracked training run: Ray Train fit -> test evaluation -> MLflow model + registry.

The test split is read and predicted once, through the model package (what
`models:/...` serves): its global metrics, the per-image table and the logged input
example all come from that pass.

Called by the Prefect flows and the CLI; knows nothing about Prefect.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import torch
import yaml
from mlflow import MlflowClient
from torch.utils.data import DataLoader

from unet_core.data import PreparedDataset, read_manifest
from unet_core.engine import CHECKPOINT_FILE, evaluate, load_checkpoint
from unet_core.models import create_model
from unet_core.package import load_package, save_package
from unetflow import datasets, evaluation, plots, tracking
from unetflow import plan as plans
from unetflow.builders import inference_spec, make_accumulator
from unetflow.config import ExperimentConfig, tracked_params
from unetflow.ray_tracking import backfill
from unetflow.ray_train import RayTrainOutcome, fit_with_ray

PER_IMAGE_ARTIFACT = "evaluation/test_per_image.json"
GRID_IMAGES = 8  # validation images in the prediction grid


@dataclass(frozen=True)
class TrainReport:
    run_id: str
    experiment_id: str
    model_uri: str
    registered_name: str
    version: str
    became_champion: bool
    test_metrics: dict[str, float]
    best_val: dict[str, float]
    ray_run_name: str
    storage_path: str
    lineage: dict[str, str] = field(default_factory=dict)


def run_name(cfg: ExperimentConfig, data_version: str) -> str:
    """Deterministic: the same config on the same data resumes the same Ray run."""
    return f"{cfg.name}-{cfg.fingerprint(data_version)}"


def storage_path(cfg: ExperimentConfig, project_dir: Path) -> str:
    return cfg.checkpoint.storage_path or str(project_dir.resolve() / ".unetflow" / "ray_results")


def evaluate_split(
    cfg: ExperimentConfig, weights: dict, data_dir: Path, split: str = "test"
) -> dict[str, float]:
    """Global metrics of `weights` on one split, in this process (plain forward pass)."""
    data = PreparedDataset(data_dir, split, normalization=cfg.data.normalization)
    return _evaluate(cfg, weights, data, prefix=f"{split}_")


def _evaluate(
    cfg: ExperimentConfig, weights: dict, data: PreparedDataset, prefix: str
) -> dict[str, float]:
    model = create_model(cfg.model)
    model.load_state_dict(weights)
    loader = DataLoader(data, batch_size=cfg.train.batch_size)
    return evaluate(model, loader, make_accumulator(cfg), device=torch.device("cpu"), prefix=prefix)


def _package(cfg: ExperimentConfig, weights: dict, data_dir: Path, out: Path) -> Path:
    spec = inference_spec(cfg, read_manifest(data_dir))
    return save_package(out / "model.pt", weights, cfg.model, spec)


@dataclass(frozen=True)
class SplitEvaluation:
    """The test split, read and predicted once through the package (the served path)."""

    metrics: dict[str, float]  # test_dice, test_iou, ... over the whole split
    prediction: evaluation.SplitPrediction | None  # None for multilabel (no label maps)
    example: np.ndarray  # [1, C, *spatial] raw intensities: the logged input example


def evaluate_test(
    cfg: ExperimentConfig, weights: dict, package: Path, data_dir: Path
) -> SplitEvaluation:
    """Global test metrics, per-image predictions and the input example from one pass.

    Binary and multiclass models are evaluated as users get them from `models:/...`
    (the package's sliding window and threshold). Multilabel models have no label-map
    predictions, so their metrics come from a plain forward pass (`evaluate_split`).
    """
    if cfg.loss.mode == "multilabel":
        # Reads case by case; normalises per item as training did.
        data = PreparedDataset(data_dir, "test", normalization=cfg.data.normalization)
        example = data.raw(0)[0][None]
        return SplitEvaluation(_evaluate(cfg, weights, data, prefix="test_"), None, example)
    segmenter = load_package(package)
    acc = make_accumulator(cfg, threshold=segmenter.spec.threshold)
    prediction = evaluation.predict_split(segmenter, data_dir, "test", accumulator=acc)
    metrics = {f"test_{k}": v for k, v in acc.compute().items()}
    # Raw intensities, as a user would send them: the pyfunc model normalises itself.
    return SplitEvaluation(metrics, prediction, prediction.images[0][None])


def train_and_register(
    cfg: ExperimentConfig, project_dir: Path, data_version: str, lineage: dict[str, str | None]
) -> TrainReport:
    """Train with Ray, evaluate the best checkpoint on the test split, log and register.

    The run ends FINISHED, FAILED or KILLED (SIGTERM) truthfully. The first registered
    version becomes champion only when its test Dice reaches `tracking.min_dice`.
    """
    project_dir = project_dir.resolve()
    # Settings the config leaves unset come from the data's fingerprint (plan: false: no).
    requested = cfg
    cfg, plan, memory_why = plans.planned(project_dir, cfg)
    # data.path may be a raw images/ + masks/ folder: prepared here, versioned by content.
    # Checked against the config here, before an MLflow run or a Ray worker exists.
    data_dir, folder_version = datasets.resolve_for(project_dir, cfg)
    data_version = folder_version or data_version
    mlflow.set_tracking_uri(tracking.tracking_uri(project_dir))
    experiment_id = tracking.ensure_experiment(cfg.tracking.experiment, project_dir)
    name, storage = run_name(cfg, data_version), storage_path(cfg, project_dir)
    tags = _lineage_tags(project_dir, lineage, data_version, name, storage)
    resumed = tracking.unfinished_run(experiment_id, name)  # Ray resumes it as well
    with tracking.tracked_run(
        experiment_id=experiment_id,
        **({"run_id": resumed} if resumed else {"run_name": name}),
        tags=tags,
        log_system_metrics=True,
    ) as run:
        _log_config(cfg)
        if plan is not None:
            plan_text = plans.plan_yaml(requested, plan, memory_why)
            mlflow.log_text(tracking.redact(plan_text), plans.PLAN_ARTIFACT)
        tracking.log_dataset(data_dir, data_version)
        target = {"uri": mlflow.get_tracking_uri(), "run_id": run.info.run_id}
        outcome = fit_with_ray(cfg, data_dir, name, storage, tracking=target)
        backfill(target["uri"], target["run_id"], outcome.history)  # what an outage held back
        model_uri, test_metrics = _evaluate_and_log_model(cfg, outcome, data_dir, run.info.run_id)
        dice = test_metrics.get("test_dice", float("nan"))
        reg = tracking.register(
            model_uri,
            cfg.tracking.registered_model,
            cfg.tracking.champion_alias,
            {**tags, f"{tracking.TAG}run_id": run.info.run_id},
            description=_version_description(cfg, data_version, dice),
            passes_gate=dice >= cfg.tracking.min_dice,
        )
    best_val = {k: float(v) for k, v in outcome.best_metrics.items() if k.startswith("val_")}
    return TrainReport(
        run_id=run.info.run_id,
        experiment_id=experiment_id,
        model_uri=model_uri,
        registered_name=reg.name,
        version=reg.version,
        became_champion=reg.became_champion,
        test_metrics=test_metrics,
        best_val=best_val,
        ray_run_name=name,
        storage_path=tracking.redact(storage),
        lineage=tags,
    )


def _lineage_tags(
    project_dir: Path,
    lineage: dict[str, str | None],
    data_version: str,
    ray_run_name: str,
    ray_storage: str,
) -> dict[str, str]:
    """Where the run came from: code (git), data, orchestration and Ray storage."""
    return tracking.lineage_tags(
        {
            **lineage,
            **tracking.git_state(project_dir),
            "data_version": data_version,
            "ray_run_name": ray_run_name,
            "ray_storage_path": ray_storage,
        }
    )


def _log_config(cfg: ExperimentConfig) -> None:
    """The whole config as params (flattened) and as the YAML that reproduces the run."""
    mlflow.log_params(tracking.redact_all(tracked_params(cfg)))
    config_yaml = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    mlflow.log_text(tracking.redact(config_yaml), tracking.CONFIG_ARTIFACT)


def _evaluate_and_log_model(
    cfg: ExperimentConfig, outcome: RayTrainOutcome, data_dir: Path, run_id: str
) -> tuple[str, dict[str, float]]:
    """Package the best checkpoint, score it on the test split as it is served, log the
    metrics, plots and the pyfunc model; returns the model URI and the test metrics."""
    with outcome.best_checkpoint.as_directory() as ckpt_dir:
        weights = load_checkpoint(Path(ckpt_dir) / CHECKPOINT_FILE)["model"]
    with tempfile.TemporaryDirectory() as tmp:
        package = _package(cfg, weights, data_dir, Path(tmp))
        test = evaluate_test(cfg, weights, package, data_dir)
        _log_artifacts(cfg, package, data_dir, run_id, Path(tmp), test.prediction)
        best_epoch = int(outcome.best_metrics["epoch"])
        model = tracking.log_model(
            package, test.example, cfg.model.in_channels, cfg.model.spatial_dims, best_epoch
        )
        # Logged with the model's id: the run and the model page both show them.
        mlflow.log_metrics(
            {**test.metrics, "best_epoch": float(best_epoch)}, model_id=model.model_id
        )
    return model.model_uri, test.metrics


def _version_description(cfg: ExperimentConfig, data_version: str, dice: float) -> str:
    gate = "passes" if dice >= cfg.tracking.min_dice else "fails"
    return (
        f"{cfg.name} trained by unetflow on data {data_version}: test Dice {dice:.4f} "
        f"({gate} the champion gate min_dice={cfg.tracking.min_dice})."
    )


def _log_artifacts(
    cfg: ExperimentConfig,
    package: Path,
    data_dir: Path,
    run_id: str,
    tmp: Path,
    test: evaluation.SplitPrediction | None,
) -> None:
    """Learning curves, validation predictions of the best epoch, per-image test table."""
    client = MlflowClient()
    history = {
        key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        for key in ("train_loss", "val_loss", "val_dice", "val_iou")
    }
    mlflow.log_artifact(str(plots.learning_curves(history, tmp / "learning_curves.png")), "plots")
    if test is None:
        print("per-image table and prediction grid: not available for multilabel models")
        return
    segmenter = load_package(package)
    val = evaluation.predict_split(segmenter, data_dir, "val", limit=GRID_IMAGES)
    mlflow.log_artifact(str(plots.prediction_grid(val, tmp / "val_predictions.png")), "plots")
    binary = segmenter.spec.mode == "binary"
    rows = evaluation.per_image_table(test, 1 if binary else cfg.model.out_channels)
    mlflow.log_table(evaluation.table_columns(rows), artifact_file=PER_IMAGE_ARTIFACT)
    mlflow.log_metric("test_dice_per_image_mean", evaluation.mean_metric(rows, "dice"))
