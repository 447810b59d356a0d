"""MLflow runs of a search: one parent run per search, one nested child run per trial.

Runs are found or created by tags (`unetflow.search_name`, `unetflow.trial_id`), so a
restarted trial or a resumed search logs into the runs it already has instead of
creating duplicates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from tune.search_config import SearchTracking

SEARCH_TAG = "unetflow.search_name"
ROLE_TAG = "unetflow.search_role"
TRIAL_TAG = "unetflow.trial_id"
EPOCH_KEY = "epoch"  # reported every epoch: which epochs a child run already holds
RESUMED_TAG = "unetflow.resumed_from_epoch"  # the checkpoint a restored trial went on from
T = TypeVar("T")


def _retry(call: Callable[[], T], attempts: int = 5) -> T:
    # Several trials share one SQLite store: a write can meet "database is locked".
    for attempt in range(attempts):
        try:
            return call()
        except MlflowException as err:
            if "locked" not in str(err).lower() or attempt == attempts - 1:
                raise
            time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


def _find(client: MlflowClient, experiment_id: str, tags: dict[str, str]) -> str | None:
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = _retry(lambda: client.search_runs([experiment_id], query, max_results=1))
    return runs[0].info.run_id if runs else None


def parent_run(uri: str, experiment_id: str, search_name: str, tags: dict[str, str]) -> str:
    """The id of the search's parent run, created on the first call."""
    client = MlflowClient(tracking_uri=uri)
    key = {SEARCH_TAG: search_name, ROLE_TAG: "parent"}
    found = _find(client, experiment_id, key)
    if found is not None:
        _retry(lambda: client.update_run(found, status="RUNNING"))
        return found
    run = _retry(
        lambda: client.create_run(experiment_id, tags={**tags, **key}, run_name=search_name)
    )
    return run.info.run_id


def finish(uri: str, run_id: str, status: str = "FINISHED") -> None:
    """Mark a run finished (or FAILED)."""
    client = MlflowClient(tracking_uri=uri)
    _retry(lambda: client.set_terminated(run_id, status=status))


class TrialLogger:
    """Logs one trial into its child run (found or created by trial id)."""

    def __init__(self, tracking: SearchTracking, trial_id: str, trial_name: str) -> None:
        self.client = MlflowClient(tracking_uri=tracking.uri)
        experiment_id, parent = tracking.experiment_id, tracking.parent_run_id
        key = {SEARCH_TAG: tracking.search_name, TRIAL_TAG: trial_id, ROLE_TAG: "trial"}
        found = _find(self.client, experiment_id, key)
        if found is None:
            tags = {**key, MLFLOW_PARENT_RUN_ID: parent, MLFLOW_RUN_NAME: trial_name}
            found = _retry(lambda: self.client.create_run(experiment_id, tags=tags).info.run_id)
            self.epochs_logged: set[int] = set()
        else:
            _retry(lambda: self.client.update_run(found, status="RUNNING"))
            history = _retry(lambda: self.client.get_metric_history(found, EPOCH_KEY))
            self.epochs_logged = {m.step for m in history}
        self.run_id: str = found

    def log_params(self, params: dict[str, Any]) -> None:
        """Params once: a restarted trial logs the same values, which MLflow accepts."""
        existing = _retry(lambda: self.client.get_run(self.run_id)).data.params
        new = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in existing]
        for i in range(0, len(new), 100):  # MLflow takes at most 100 params per batch
            _retry(lambda chunk=new[i : i + 100]: self.client.log_batch(self.run_id, params=chunk))

    def log_epoch(self, metrics: dict[str, float], epoch: int) -> None:
        """Per-epoch metrics, once per epoch: a trial killed after logging an epoch but
        before its checkpoint was saved repeats that epoch on restart; it is not logged twice.
        """
        if epoch in self.epochs_logged:
            return
        self.log_metrics(metrics, step=epoch)
        self.epochs_logged.add(epoch)

    def mark_resumed(self, epoch: int) -> None:
        """Tag the run with the epoch a restored trial continues after (the latest restore)."""
        _retry(lambda: self.client.set_tag(self.run_id, RESUMED_TAG, str(epoch)))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if _is_number(v)]
        _retry(lambda: self.client.log_batch(self.run_id, metrics=batch))

    def finish(self, status: str = "FINISHED") -> None:
        _retry(lambda: self.client.set_terminated(self.run_id, status=status))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def child_runs(uri: str, experiment_id: str, search_name: str) -> list[Any]:
    """All trial runs of a search (used by tests and the summary)."""
    client = MlflowClient(tracking_uri=uri)
    query = f"tags.`{SEARCH_TAG}` = '{search_name}' and tags.`{ROLE_TAG}` = 'trial'"
    return _retry(lambda: client.search_runs([experiment_id], query, max_results=1000))


def log_artifact(uri: str, run_id: str, path: Path, artifact_path: str | None = None) -> None:
    client = MlflowClient(tracking_uri=uri)
    _retry(lambda: client.log_artifact(run_id, str(path), artifact_path))
