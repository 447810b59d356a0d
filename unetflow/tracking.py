"""MLflow tracking: where runs go, what they carry, how models are logged and registered.

The embedded default is a SQLite store and an artifact folder under
`<project>/.unetflow/`; `MLFLOW_TRACKING_URI` points everything at a real server.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

from unetflow.serving import PACKAGE_ARTIFACT, UNetSegmenter

TAG = "unetflow."  # prefix of every lineage tag


def tracking_uri(project_dir: Path) -> str:
    """`MLFLOW_TRACKING_URI`, else the embedded SQLite store of the project."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    store = project_dir.resolve() / ".unetflow"
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


def ensure_experiment(name: str, project_dir: Path) -> str:
    """Experiment id of `name`, creating it (artifacts beside the embedded store)."""
    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if mlflow.get_tracking_uri().startswith("sqlite:"):
        location = (project_dir.resolve() / ".unetflow" / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=location)


def git_state(project_dir: Path) -> dict[str, str]:
    """Commit and dirty flag of the project's git checkout ('unknown' outside git)."""

    def git(*args: str) -> str | None:
        proc = subprocess.run(["git", *args], cwd=project_dir, capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"git_commit": commit, "git_dirty": str(dirty).lower()}


def lineage_tags(values: dict[str, str | None]) -> dict[str, str]:
    """Prefix lineage values as tags, dropping unknown ones."""
    return {f"{TAG}{k}": str(v) for k, v in values.items() if v is not None}


class EpochLogger:
    """Logs per-epoch metrics to an existing run from inside a training worker."""

    def __init__(self, uri: str, run_id: str) -> None:
        self.client = MlflowClient(tracking_uri=uri)
        self.run_id = run_id

    def log(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)


def model_signature(in_channels: int, spatial_dims: int) -> ModelSignature:
    """Any batch and image size: only the channel axis is fixed."""
    spatial = (-1,) * spatial_dims
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, in_channels, *spatial))]),
        outputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, *spatial))]),
    )


def log_model(package: Path, input_example: np.ndarray, in_channels: int, spatial_dims: int) -> str:
    """Log the model package as a pyfunc model in the active run; returns its model URI."""
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=UNetSegmenter(),
        artifacts={PACKAGE_ARTIFACT: str(package)},
        signature=model_signature(in_channels, spatial_dims),
        input_example=input_example,
    )
    return info.model_uri


@dataclass(frozen=True)
class Registration:
    name: str
    version: str
    became_champion: bool


def register(model_uri: str, name: str, alias: str, tags: dict[str, str]) -> Registration:
    """Register a version; it takes `alias` only when no version holds it yet.

    Replacing an existing champion is a promotion decision (`unetflow promote`), never
    a side effect of training.
    """
    client = MlflowClient()
    version = mlflow.register_model(model_uri, name, tags=tags)
    try:
        client.get_model_version_by_alias(name, alias)
        became = False
    except MlflowException:
        client.set_registered_model_alias(name, alias, version.version)
        became = True
    return Registration(name, str(version.version), became)
