"""The training driver as a Ray Job on the cluster, so it outlives the machine that asked.

`unetflow train` runs the driver (Prefect flow, Ray Train controller, test evaluation,
registration) where it is called: a closed laptop or a restarted Prefect worker stops
the training. `submit_training` hands the same command to the cluster's job server
instead; the caller only watches. The job's id follows from the config and the data
version, so calling again with the same inputs attaches to the running job, reports a
finished one, or (after a failed or stopped one) submits a new attempt, which resumes
the Ray run from its last checkpoint.

A job runs on the head node, not where it was submitted: everything it reads must be
reachable from there (data and checkpoints in object storage, an MLflow server).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from unetflow.config import ExperimentConfig
from unetflow.errors import UsageError
from unetflow.storage import is_remote

JOB_CONFIG = "unetflow-job.yaml"
# Passed to the job: where the services are (no credentials; the cluster has its own).
FORWARDED_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_S3_ENDPOINT_URL",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_DEFAULT_REGION",
    "PREFECT_API_URL",
)
ACTIVE = ("PENDING", "RUNNING")
POLL_S = 2.0


@dataclass(frozen=True)
class JobOutcome:
    submission_id: str
    status: str  # SUCCEEDED, FAILED or STOPPED
    attached: bool  # True: the job was already running (or done) when this call came


def check_submittable(cfg: ExperimentConfig) -> None:
    """Refuse, before anything is submitted, what a driver on the head node cannot reach."""
    if not os.environ.get("RAY_ADDRESS"):
        raise UsageError(
            "--submit needs a Ray cluster: set RAY_ADDRESS (the head's address, or "
            "http://HEAD:8265) and the cluster's auth token (RAY_AUTH_TOKEN)"
        )
    if not is_remote(cfg.data.path):
        raise UsageError(
            f"data.path {cfg.data.path!r} is a local folder, which the job on the head node "
            "cannot read; prepare or upload it to s3://BUCKET/PREFIX and set data.path to it"
        )
    storage = cfg.checkpoint.storage_path
    if not (storage and (is_remote(storage) or cfg.checkpoint.storage_shared)):
        raise UsageError(
            "--submit keeps checkpoints where every node reaches them: set "
            "checkpoint.storage_path: s3://BUCKET/PREFIX"
        )
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri.startswith(("http://", "https://")):
        raise UsageError(
            "--submit logs to an MLflow server the head node reaches: set "
            "MLFLOW_TRACKING_URI=http://HOST:PORT (a local file or SQLite store stays here)"
        )


def client() -> Any:
    """The cluster's job server, found from RAY_ADDRESS (token auth from the environment)."""
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient()
    except Exception as err:  # unreachable head, refused token
        raise UsageError(
            f"cannot reach the Ray job server of RAY_ADDRESS ({type(err).__name__}: {err})"
        ) from None


def latest_attempt(jobs: Any, base: str) -> tuple[str, str] | None:
    """(submission id, status) of the newest attempt `base`, `base-2`, ...; None if none."""
    found = []
    for job in jobs.list_jobs():
        sid = job.submission_id or ""
        if sid == base or (sid.startswith(f"{base}-") and sid[len(base) + 1 :].isdigit()):
            attempt = 1 if sid == base else int(sid[len(base) + 1 :])
            found.append((attempt, sid, str(job.status.value)))
    if not found:
        return None
    _, sid, status = max(found)
    return sid, status


def next_id(base: str, previous: str | None) -> str:
    if previous is None:
        return base
    attempt = 1 if previous == base else int(previous.rsplit("-", 1)[1])
    return f"{base}-{attempt + 1}"


def submit_training(
    cfg: ExperimentConfig,
    base_id: str,
    say: Callable[[str], None] = print,
) -> JobOutcome:
    """Submit the training of `cfg` as a Ray Job (or attach to it) and follow it.

    The job runs `unetflow.job_driver` with the config written into its working dir.

    Args:
        base_id: the job's id without attempt suffix; the same inputs give the same id.
        say: where progress lines go (the job's own output included).
    """
    jobs = client()
    latest = latest_attempt(jobs, base_id)
    if latest is not None and (latest[1] in ACTIVE or latest[1] == "SUCCEEDED"):
        sid, status = latest
        say(f"attaching to Ray job {sid} ({status})")
        return JobOutcome(sid, follow(jobs, sid, say), attached=True)
    sid = next_id(base_id, latest[0] if latest else None)
    with tempfile.TemporaryDirectory(prefix="unetflow-job-") as tmp:
        (Path(tmp) / JOB_CONFIG).write_text(
            # Only what the user set: the job plans the rest on the cluster, for its devices.
            yaml.safe_dump(cfg.model_dump(mode="json", exclude_unset=True), sort_keys=False)
        )
        env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
        jobs.submit_job(
            entrypoint=f"python -m unetflow.job_driver {JOB_CONFIG} {sid}",
            submission_id=sid,
            runtime_env={"working_dir": tmp, "env_vars": env},
        )
    resumed = " (resumes from the last checkpoint)" if latest else ""
    say(
        f"submitted Ray job {sid}{resumed}; it runs on the cluster whatever happens to this "
        f"process: rerun this command to attach, or `ray job logs -f {sid}`"
    )
    return JobOutcome(sid, follow(jobs, sid, say), attached=False)


def submit_for(
    cfg: ExperimentConfig, project_dir: Path, say: Callable[[str], None] = print
) -> JobOutcome:
    """Check `cfg` on this machine, then submit (or attach to) its training job.

    The id is the Ray run's name (config + data version), so the CLI and the Prefect
    task find the same job for the same inputs.
    """
    from unetflow.datasets import resolve_for
    from unetflow.plan import planned
    from unetflow.training import run_name

    check_submittable(cfg)
    # The data is checked here, not there, as it will train (with the plan's settings).
    _, version = resolve_for(project_dir, planned(project_dir, cfg)[0])
    return submit_training(cfg, f"unetflow-{run_name(cfg, version or '')}", say)


def follow(jobs: Any, sid: str, say: Callable[[str], None]) -> str:
    """Print the job's new output until it ends; returns its final status."""
    shown = 0
    while True:
        status = str(jobs.get_job_status(sid).value)
        logs = jobs.get_job_logs(sid)
        for line in logs[shown:].splitlines():
            say(line)
        shown = len(logs)
        if status not in ACTIVE:
            return status
        time.sleep(POLL_S)
