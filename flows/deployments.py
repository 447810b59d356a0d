"""Deployments of every flow: on a process work pool (`unetflow deploy`, then a worker
runs them), or served by this process (`unetflow serve`) for a local set-up.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from prefect import Flow, serve
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.deployments.runner import RunnerDeployment
from prefect.exceptions import ObjectAlreadyExists
from prefect.utilities.callables import ParameterSchema

from flows import DEFAULT_POOL, crash_detection
from flows.form_schema import form_schema

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class DeploymentSpec:
    flow: str  # flow function name in flows/pipeline.py
    name: str  # deployment name: runs are "<flow>/<name>"
    cron: str | None  # schedule (UTC); None: run on demand only
    description: str


DEPLOYMENTS = (
    DeploymentSpec("pipeline", "nightly", "0 2 * * *", "data -> train -> promote, every night"),
    DeploymentSpec("tune", "weekly", "0 3 * * 0", "architecture/hyperparameter search, weekly"),
    DeploymentSpec("data_prep", "on-demand", None, "reproduce and push the DVC data stages"),
    DeploymentSpec("train", "on-demand", None, "train one config and register the model"),
    DeploymentSpec("evaluate_and_promote", "on-demand", None, "gated promotion to champion"),
)


def _load(spec: DeploymentSpec) -> Flow:
    from flows import pipeline

    return getattr(pipeline, spec.flow)


def _parameters(project_dir: Path) -> dict:
    # Only the project folder is pinned here; every other parameter keeps the flow's
    # default and can be changed per run in the UI.
    return {"project_dir": str(project_dir.resolve())}


def _deployment(flow: Flow, spec: DeploymentSpec, project_dir: Path, **kwargs) -> RunnerDeployment:
    deployment = flow.to_deployment(
        name=spec.name,
        cron=spec.cron,
        parameters=_parameters(project_dir),
        description=spec.description,
        tags=["unetflow"],
        **kwargs,
    )
    # Prefect offers no argument for the schema; its own (class defaults in the nested
    # definitions) makes the form show and submit other values than the flow's defaults.
    deployment._parameter_openapi_schema = ParameterSchema(**form_schema(flow.fn))
    return deployment


def ensure_work_pool(name: str) -> None:
    """Create a process work pool `name` unless it exists."""
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=name, type="process"))


def deploy_all(project_dir: Path, pool: str = DEFAULT_POOL) -> list[UUID]:
    """Register every deployment on the Prefect server named by PREFECT_API_URL, and
    the automation that marks their runs CRASHED when their process dies."""
    ensure_work_pool(pool)
    crash_detection.ensure_zombie_automation()
    ids = []
    for spec in DEPLOYMENTS:
        source = Flow.from_source(
            source=str(REPO_ROOT), entrypoint=f"flows/pipeline.py:{spec.flow}"
        )
        deployment = _deployment(
            source,
            spec,
            project_dir,
            work_pool_name=pool,
            # The worker starts each run with these: heartbeats the automation watches.
            job_variables={"env": crash_detection.heartbeat_env()},
        )
        # RunnerDeployment.apply, not Flow.deploy: the latter lists the pool's workers
        # with a request that prefect 3.8's own server rejects (422, limit=None).
        ids.append(deployment.apply(work_pool_name=pool))
        print(
            f"deployed {spec.flow}/{spec.name}" + (f" (cron {spec.cron} UTC)" if spec.cron else "")
        )
    return ids


def serve_all(project_dir: Path) -> None:
    """Serve every deployment from this process until interrupted."""
    crash_detection.ensure_zombie_automation()
    for key, value in crash_detection.heartbeat_env().items():
        os.environ.setdefault(key, value)  # the served runs are this process's children
    deployments = [_deployment(_load(spec), spec, project_dir) for spec in DEPLOYMENTS]
    serve(*deployments)
