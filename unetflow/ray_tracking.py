"""Epoch metrics reach MLflow from the driver's node, and a tracking outage never stops
training.

Rank 0 used to log each epoch itself. On a multi-node cluster that worker may sit on a
node where the default SQLite store is another file (`Run ... not found`), and any
MLflow error killed the worker group and burned `max_failures`. Now every rank only
calls `ray.train.report`; this callback runs in the Ray Train controller, which Ray
places on the driver's node, and logs rank 0's metrics there.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any

from ray.train import UserCallback

# Reported for checkpoint bookkeeping, not learning curves.
NOT_LOGGED = frozenset({"epoch", "is_best", "validated"})
MAX_PENDING = 10_000  # metrics kept through an outage (about 1000 epochs of 10 metrics)
BATCH = 1000  # MLflow's log_batch limit on metrics per call


class EpochMetricsLogger(UserCallback):
    """Logs rank 0's reported metrics to an MLflow run, step = epoch.

    A failed call keeps the metrics and retries with the next report after
    `retry_after_s`, so an outage costs the controller one short attempt per interval
    (one retry, `timeout_s` per request) and loses nothing that fits `MAX_PENDING`.
    """

    def __init__(
        self, uri: str, run_id: str, retry_after_s: float = 60.0, timeout_s: int = 10
    ) -> None:
        self.uri, self.run_id = uri, run_id
        self.retry_after_s, self.timeout_s = retry_after_s, timeout_s
        self.pending: list[Any] = []
        self.down_until = 0.0
        self.logged = 0
        self._client: Any = None

    def after_report(
        self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any
    ) -> None:
        if not metrics:
            return
        self.add(metrics[0])
        self.flush()

    def add(self, row: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        step, now = int(row.get("epoch", 0)), int(time.time() * 1000)
        for key, value in row.items():
            # Not infinities: a checkpoint written between validations carries the
            # monitored metric as -inf/inf only so that Ray ranks it last.
            if key not in NOT_LOGGED and isinstance(value, int | float) and math.isfinite(value):
                self.pending.append(Metric(key, float(value), now, step))
        del self.pending[:-MAX_PENDING]  # keep the newest through a long outage

    def flush(self) -> bool:
        """Send what is pending; False (and a warning) when MLflow cannot be reached."""
        if not self.pending or time.monotonic() < self.down_until:
            return not self.pending
        try:
            while self.pending:
                self.client().log_batch(self.run_id, metrics=self.pending[:BATCH])
                self.logged += len(self.pending[:BATCH])
                del self.pending[:BATCH]
        except Exception as err:  # any outage or rejection: training goes on
            self.down_until = time.monotonic() + self.retry_after_s
            _warn(
                f"MLflow at {_host(self.uri)} failed ({type(err).__name__}); training "
                f"continues, {len(self.pending)} metrics kept, next try in {self.retry_after_s:.0f}s"
            )
            return False
        return True

    def client(self) -> Any:
        if self._client is None:
            # This runs in the controller process: its MLflow requests fail fast
            # (MLflow's default is 7 retries with exponential backoff, minutes per call).
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(self.timeout_s))
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client


def _host(uri: str) -> str:
    from unetflow.tracking import redact

    return redact(uri)


def _warn(line: str) -> None:
    sys.stderr.write(f"warning: {line}\n")
    sys.stderr.flush()


def backfill(uri: str, run_id: str, history: list[dict[str, Any]]) -> int:
    """Log every epoch metric of `history` that the run lacks; returns how many.

    The controller's logger keeps metrics through an outage, but what was still pending
    when training ended (the server restarting during the last epochs) ended with the
    controller. The driver holds the whole history (from the last checkpoint), so it
    fills the gaps once training is over; MLflow's client retries through a restart.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client, now = MlflowClient(tracking_uri=uri), int(time.time() * 1000)
    keys = sorted({key for row in history for key in row if key not in NOT_LOGGED})
    missing = []
    for key in keys:
        logged = {m.step for m in client.get_metric_history(run_id, key)}
        for row in history:
            value, step = row.get(key), int(row["epoch"])
            if step not in logged and isinstance(value, int | float) and math.isfinite(value):
                missing.append(Metric(key, float(value), now, step))
    for start in range(0, len(missing), BATCH):
        client.log_batch(run_id, metrics=missing[start : start + BATCH])
    return len(missing)
