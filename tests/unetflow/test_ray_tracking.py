"""Epoch metrics go to MLflow from the driver, and an MLflow outage never stops training.

A real `mlflow server` behind a TCP proxy that can be taken down, and a real Ray Train
run on the local Ray.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.support.mlflow_server import mlflow_server
from tests.support.s3 import OutageProxy
from unetflow.config import parse_config
from unetflow.ray_tracking import EpochMetricsLogger
from unetflow.ray_train import fit_with_ray

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def mlflow_url(tmp_path_factory: pytest.TempPathFactory):
    store = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    with mlflow_server(f"sqlite:///{store}", timeout=400) as url:  # slow on a busy 2-core CI
        yield url


def _run(url: str) -> str:
    client = MlflowClient(tracking_uri=url)
    experiment = client.get_experiment_by_name("outage") or client.create_experiment("outage")
    eid = experiment if isinstance(experiment, str) else experiment.experiment_id
    return client.create_run(eid).info.run_id


def _steps(url: str, run_id: str, key: str = "val_dice") -> list[int]:
    return sorted(m.step for m in MlflowClient(tracking_uri=url).get_metric_history(run_id, key))


def test_logger_keeps_metrics_through_an_outage_and_sends_them_after(mlflow_url: str) -> None:
    run_id = _run(mlflow_url)
    with OutageProxy(int(mlflow_url.rsplit(":", 1)[1])) as proxy:
        logger = EpochMetricsLogger(proxy.url, run_id, retry_after_s=0.0, timeout_s=5)
        logger.after_report(None, [{"val_dice": 0.1, "epoch": 0, "is_best": 1}], None)
        proxy.down()
        started = time.monotonic()
        logger.after_report(None, [{"val_dice": 0.2, "epoch": 1, "is_best": 1}], None)
        assert time.monotonic() - started < 30, "an outage must fail fast, not retry for minutes"
        assert proxy.refused >= 1 and len(logger.pending) == 1
        proxy.up()
        logger.after_report(None, [{"val_dice": 0.3, "epoch": 2, "is_best": 1}], None)
    assert not logger.pending
    assert _steps(mlflow_url, run_id) == [0, 1, 2]  # nothing lost
    assert _steps(mlflow_url, run_id, "is_best") == []  # bookkeeping keys stay out


def test_training_finishes_when_mlflow_dies_mid_run(
    mlflow_url: str, prepared_dir: Path, ray_local, tmp_path: Path
) -> None:
    cfg = parse_config(
        {
            "name": "outage",
            # ~0.5-s epochs: a tiny model trained all 6 before the outage on a quiet machine.
            "model": {"preset": "unet", "base_channels": 32, "depth": 3},
            "train": {"epochs": 6, "batch_size": 4, "early_stopping": {"enabled": False}},
            "scaling": {"num_workers": 1},
            # Any worker failure would end the run; all 6 kept: history comes from them.
            "checkpoint": {"max_failures": 0, "num_to_keep": 6},
        }
    )
    run_id = _run(mlflow_url)
    with OutageProxy(int(mlflow_url.rsplit(":", 1)[1])) as proxy:
        outcome: dict = {}

        def train() -> None:
            tracking = {"uri": proxy.url, "run_id": run_id}
            outcome["result"] = fit_with_ray(
                cfg, prepared_dir, "outage", str(tmp_path / "ray"), tracking
            )

        thread = threading.Thread(target=train)
        thread.start()
        deadline = time.monotonic() + 300
        while not _steps(mlflow_url, run_id) and time.monotonic() < deadline:
            time.sleep(0.2)
        proxy.down()  # the tracking server is gone from epoch 2 or so on
        thread.join(600)
    assert not thread.is_alive()
    result = outcome["result"]
    assert [int(h["epoch"]) for h in result.history] == list(range(6))
    logged = _steps(mlflow_url, run_id)
    assert logged and logged[0] == 0
    assert proxy.refused >= 1  # the driver really hit the outage
    assert len(logged) < 6, f"the outage came too late to test anything: {logged}"
