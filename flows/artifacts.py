"""Prefect artifacts (keyed, so they show on the Artifacts page) summarising flow runs."""

from __future__ import annotations

import mlflow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from unetflow.training import TrainReport


def _mlflow_link(report: TrainReport) -> str:
    """A link into the MLflow UI when the tracking store is a server."""
    uri = mlflow.get_tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return f"`{report.run_id}`"
    url = f"{uri.rstrip('/')}/#/experiments/{report.experiment_id}/runs/{report.run_id}"
    return f"[{report.run_id}]({url})"


def _champion_cell(champion_version: str | None, version: str) -> str:
    if champion_version is None:
        return "none"
    return "this version" if champion_version == version else f"v{champion_version}"


def train_summary(report: TrainReport, data_version: str, champion_version: str | None) -> None:
    """Test metrics, run, model version and which version is champion after the run
    (read from the registry: a reused run's report may be out of date)."""
    m = report.test_metrics
    rows = [
        ("data version", f"`{data_version}`"),
        ("test Dice", f"{m.get('test_dice', float('nan')):.4f}"),
        ("test IoU", f"{m.get('test_iou', float('nan')):.4f}"),
        ("MLflow run", _mlflow_link(report)),
        ("model", f"`models:/{report.registered_name}/{report.version}`"),
        ("champion", _champion_cell(champion_version, report.version)),
        ("Ray run", f"`{report.ray_run_name}` in `{report.storage_path}`"),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    create_markdown_artifact(
        key="train-summary",
        markdown=f"# Training\n\n| item | value |\n|---|---|\n{table}\n",
        description="data version, test metrics, MLflow run and model version",
    )


def data_summary(data_version: str) -> None:
    create_markdown_artifact(
        key="data-summary",
        markdown=f"# Data\n\nversion `{data_version}` (md5 of data/prepared in dvc.lock)\n",
        description="prepared data version",
    )


def table(key: str, rows: list[dict], description: str) -> None:
    create_table_artifact(key=key, table=rows, description=description)


def markdown(key: str, text: str, description: str) -> None:
    create_markdown_artifact(key=key, markdown=text, description=description)
