"""Prefect tasks: each wraps one library call. I/O tasks retry with backoff."""

from __future__ import annotations

import hashlib
from pathlib import Path

from prefect import task
from prefect.context import TaskRunContext
from prefect.runtime import deployment, flow_run

from flows import quiet
from unetflow import datasets, dvc_data, jobs, tracking
from unetflow import plan as plans
from unetflow.config import ExperimentConfig
from unetflow.errors import UsageError
from unetflow.training import TrainReport, train_and_register
from unetflow.user_errors import USER_ERRORS

IO_RETRIES = 3
IO_BACKOFF = [5, 20, 60]  # seconds before retry 1, 2, 3

quiet.install()  # a user error fails its task and flow with the message, no traceback


def retry_unless_usage_error(task, task_run, state) -> bool:
    """Retry transient failures; bad input (`USER_ERRORS`) will not heal."""
    try:
        state.result()
    except USER_ERRORS:
        return False
    except Exception:
        return True
    return False


@task(name="dvc-reproduce", retries=1, retry_delay_seconds=5)
def reproduce_data(project_dir: str) -> str:
    """Init DVC where missing, run the stages that changed; returns the data version."""
    root = Path(project_dir)
    dvc_data.ensure_repo(root)
    dvc_data.reproduce(root)
    return dvc_data.data_version(root)


@task(
    name="dvc-push",
    retries=IO_RETRIES,
    retry_delay_seconds=IO_BACKOFF,
    retry_condition_fn=retry_unless_usage_error,
)
def push_data(project_dir: str) -> None:
    dvc_data.push(Path(project_dir))


@task(name="data-version", retries=IO_RETRIES, retry_delay_seconds=IO_BACKOFF)
def pin_data_version(config: ExperimentConfig, project_dir: str) -> tuple[ExperimentConfig, str]:
    """Train on exactly `config.data.version`: checked out, or pulled from the remote."""
    folder = dvc_data.ensure_version(Path(project_dir), config.data.version)
    data = config.data.model_copy(update={"path": str(folder.resolve())})
    return config.model_copy(update={"data": data}), config.data.version


@task(
    name="folder-data",
    retries=1,
    retry_delay_seconds=5,
    retry_condition_fn=retry_unless_usage_error,
)
def resolve_folder_data(
    config: ExperimentConfig, project_dir: str, data_version: str | None
) -> tuple[ExperimentConfig, str]:
    """A raw images/ + masks/ `data.path` is prepared here (once per content) and versioned
    by its content hash, so the training cache sees an edited folder as new data; any
    other `data.path` keeps `data_version`."""
    # Checked as it will train: with the settings the plan derives from the data.
    planned_config = plans.planned(Path(project_dir), config)[0]
    folder, version = datasets.resolve_for(Path(project_dir), planned_config)
    if version is None:
        if data_version is None:
            raise UsageError(f"data.path {config.data.path!r} has no data version; prepare it")
        return config, data_version
    data = config.data.model_copy(update={"path": str(folder)})
    return config.model_copy(update={"data": data}), version


def _train_cache_key(context: TaskRunContext, parameters: dict) -> str:
    # Same config, same data, same project and tracking store: the same model.
    config: ExperimentConfig = parameters["config"]
    root = Path(parameters["project_dir"]).resolve()
    parts = [
        config.model_dump_json(),
        parameters["data_version"],
        str(root),
        tracking.tracking_uri(root),
    ]
    return "train-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


@task(name="train-and-register", cache_key_fn=_train_cache_key, persist_result=True)
def train_model(config: ExperimentConfig, project_dir: str, data_version: str) -> TrainReport:
    """Ray Train -> test evaluation -> MLflow model version. A rerun with the same inputs
    is a cache hit; a rerun after a failure resumes the Ray run from its checkpoint."""
    lineage = {
        "prefect_flow_run_id": flow_run.get_id(),
        "prefect_deployment": deployment.get_name(),
    }
    return train_and_register(config, Path(project_dir), data_version, lineage)


@task(name="submit-training-job", retries=0)
def submit_training_job(config: ExperimentConfig, project_dir: str) -> jobs.JobOutcome:
    """Submit the training driver as a Ray Job (or attach to it) and poll it to its end.

    No retries here: rerunning the flow attaches to the same job, or resumes a failed
    one from its last checkpoint.
    """
    outcome = jobs.submit_for(config, Path(project_dir))
    if outcome.status != "SUCCEEDED":
        raise RuntimeError(
            f"Ray job {outcome.submission_id} ended {outcome.status}; see its output above; "
            "rerun to resume it from its last checkpoint"
        )
    return outcome
