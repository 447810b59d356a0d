"""Lineage of a registered model: from a model URI back to the run, code and data, and
the commands that reproduce it.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from unetflow import tracking
from unetflow.dvc_data import PREPARED
from unetflow.errors import UsageError

_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")

# (tag suffix, label) in the order the chain is printed: model -> run -> orchestration
# -> training -> code -> data.
FIELDS = (
    ("prefect_flow_run_id", "Prefect flow run"),
    ("prefect_deployment", "Prefect deployment"),
    ("tune_search_id", "Tune search"),
    ("tune_trial_id", "Tune trial"),
    ("ray_run_name", "Ray run name"),
    ("ray_storage_path", "Ray storage path"),
    ("git_commit", "git commit"),
    ("git_dirty", "git dirty"),
    ("data_version", "data version (DVC md5)"),
)


@dataclass(frozen=True)
class Lineage:
    model_name: str
    version: str
    aliases: tuple[str, ...]
    run_id: str
    run_status: str
    experiment_id: str
    values: dict[str, str] = field(default_factory=dict)  # FIELDS keys -> values
    config_path: str | None = None  # the logged config, downloaded

    def reproduce(self) -> str:
        """Shell commands that rebuild this model from its code, data and config."""
        commit = self.values.get("git_commit", "unknown")
        steps = []
        if commit != "unknown":
            steps.append(f"git checkout {commit}")
        steps.append(f"dvc pull {PREPARED}")  # dvc.lock at that commit pins the data
        config = shlex.quote(self.config_path) if self.config_path else "<config.yaml>"
        steps.append(f"unetflow train --config {config}")
        return " && ".join(steps)


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """`models:/NAME/VERSION` or `models:/NAME@ALIAS` -> (name, version, alias)."""
    match = _MODEL_URI.match(uri.strip())
    if not match:
        raise UsageError(
            f"model URI {uri!r}: expected models:/NAME/VERSION or models:/NAME@ALIAS, "
            "e.g. models:/unet-seg@champion"
        )
    return match["name"], match["version"], match["alias"]


def trace(uri: str, project_dir: Path, download_to: Path | None = None) -> Lineage:
    """Follow `uri` to its version, run and lineage tags; download the logged config.

    Args:
        download_to: folder for the run's config.yaml (default:
            `<project>/.unetflow/lineage/<name>-v<version>/`).
    """
    project_dir = Path(project_dir).resolve()
    name, version, alias = parse_model_uri(uri)
    mlflow.set_tracking_uri(tracking.tracking_uri(project_dir))
    client = MlflowClient()
    try:
        mv = (
            client.get_model_version(name, version)
            if version
            else client.get_model_version_by_alias(name, alias)
        )
    except MlflowException:
        raise UsageError(f"{uri}: no such registered model version in {_where()}") from None
    run = client.get_run(mv.run_id)
    # Model version tags first (they survive run deletion), then the run's.
    tags = {**run.data.tags, **(mv.tags or {})}
    values = {
        key: tags[f"{tracking.TAG}{key}"] for key, _ in FIELDS if f"{tracking.TAG}{key}" in tags
    }
    out = download_to or project_dir / ".unetflow" / "lineage" / f"{name}-v{mv.version}"
    out.mkdir(parents=True, exist_ok=True)
    try:
        config = mlflow.artifacts.download_artifacts(
            run_id=mv.run_id, artifact_path=tracking.CONFIG_ARTIFACT, dst_path=str(out)
        )
    except (MlflowException, OSError):
        config = None  # runs from before config logging: say so in the output
    return Lineage(
        model_name=name,
        version=str(mv.version),
        aliases=tuple(mv.aliases or ()),
        run_id=mv.run_id,
        run_status=run.info.status,
        experiment_id=run.info.experiment_id,
        values=values,
        config_path=config,
    )


def _where() -> str:
    return tracking.redact(mlflow.get_tracking_uri())


def format_lineage(lineage: Lineage) -> str:
    """The chain, one `label: value` line each, then the reproduce command."""
    aliases = f" (@{', @'.join(lineage.aliases)})" if lineage.aliases else ""
    lines = [
        f"model:        models:/{lineage.model_name}/{lineage.version}{aliases}",
        f"MLflow run:   {lineage.run_id} (experiment {lineage.experiment_id}, "
        f"{lineage.run_status})",
    ]
    for key, label in FIELDS:
        if key in lineage.values:
            lines.append(f"{label + ':':<24}{lineage.values[key]}")
    lines.append(f"{'config:':<24}{lineage.config_path or 'not logged with this run'}")
    if lineage.values.get("git_dirty") == "true":
        lines.append("warning: the checkout had uncommitted changes; the commit alone may differ")
    lines.append(f"reproduce:\n  {lineage.reproduce()}")
    return "\n".join(lines)
