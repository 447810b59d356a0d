"""Prefect flows. Thin on purpose: parse parameters, call library functions, retry I/O."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import deployment, flow_run

from unetflow import dvc_data
from unetflow.config import ExperimentConfig
from unetflow.training import TrainReport, train_and_register


DEFAULT_CONFIG = ExperimentConfig()


@task(retries=2, retry_delay_seconds=[5, 30], name="prepare-data")
def prepare_data(project_dir: str) -> str:
    """DVC: init what is missing, reproduce the data stages, push; returns the data version."""
    root = Path(project_dir)
    dvc_data.ensure_repo(root)
    dvc_data.reproduce(root)
    dvc_data.push(root)
    version = dvc_data.data_version(root)
    print(f"data version {version}")
    return version


@task(name="train-and-register")
def train(config: ExperimentConfig, project_dir: str, data_version: str) -> TrainReport:
    lineage = {
        "prefect_flow_run_id": flow_run.get_id(),
        "prefect_deployment": deployment.get_name(),
    }
    return train_and_register(config, Path(project_dir), data_version, lineage)


def summary_markdown(report: TrainReport, data_version: str) -> str:
    m = report.test_metrics
    return (
        f"# unetflow run\n\n"
        f"| item | value |\n|---|---|\n"
        f"| data version | `{data_version}` |\n"
        f"| test Dice | {m.get('test_dice', float('nan')):.4f} |\n"
        f"| test IoU | {m.get('test_iou', float('nan')):.4f} |\n"
        f"| MLflow run | `{report.run_id}` |\n"
        f"| model | `models:/{report.registered_name}/{report.version}` |\n"
        f"| champion | {'yes (first version)' if report.became_champion else 'unchanged'} |\n"
        f"| Ray run | `{report.ray_run_name}` in `{report.storage_path}` |\n"
    )


@flow(name="pipeline", log_prints=True)
def pipeline(config: ExperimentConfig = DEFAULT_CONFIG, project_dir: str = ".") -> dict:
    """Data prep (DVC) -> Ray Train training -> MLflow model registry."""
    data_version = prepare_data(project_dir)
    report = train(config, project_dir, data_version)
    create_markdown_artifact(
        key="pipeline-summary", markdown=summary_markdown(report, data_version),
        description="data version, test metrics and registered model of this run",
    )  # fmt: skip
    return {"data_version": data_version, **report.__dict__}
