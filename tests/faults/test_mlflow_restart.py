"""The MLflow server restarts while `train_and_register` trains: no epoch metric is lost
and the run ends FINISHED. A real `mlflow server` (SQLite store) stopped and started
again on the same port, and a real Ray Train run."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.faults.common import DICE_TOLERANCE, EPOCHS, Background, fit_config, wait_for
from tests.support.mlflow_server import _stop_group
from tests.support.net import free_port, http_ok, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.integration]


class RestartableMlflow:
    """`mlflow server` on a fixed port, stopped and started again over one store."""

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.port = workdir, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "mlflow", "server", "--workers", "1"]
        cmd += ["--backend-store-uri", f"sqlite:///{self.workdir / 'mlflow.db'}"]
        cmd += ["--artifacts-destination", (self.workdir / "artifacts").as_uri()]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port)]
        log = (self.workdir / "server.log").open("a")
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True
        )
        healthy = lambda: http_ok(f"{self.url}/health")  # noqa: E731
        wait_until(healthy, "mlflow server", 300, proc=self.proc, log=str(log.name))

    def stop(self) -> None:
        if self.proc is not None:
            _stop_group(self.proc)


def _val_steps(client: MlflowClient) -> list[int]:
    """val_dice steps logged to any run so far."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    return [m.step for r in runs for m in client.get_metric_history(r.info.run_id, "val_dice")]


def test_mlflow_restart_mid_training_loses_no_epoch_metric(
    prepared_dir: Path, ray_local, baseline_dice: float, fault_record, tmp_path: Path, monkeypatch
) -> None:
    from unetflow.training import train_and_register

    fault_record.fault = "MLflow server restarted during training"
    fault_record.baseline_dice = baseline_dice
    server = RestartableMlflow(tmp_path)
    server.start()
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
        cfg = fit_config(data=str(prepared_dir))
        project = tmp_path / "project"
        project.mkdir()
        run = Background(lambda: train_and_register(cfg, project, "faults-v1", {}))
        client = MlflowClient(tracking_uri=server.url)
        wait_for(lambda: _val_steps(client), "the first epoch metric in MLflow")
        server.stop()
        down_at = time.monotonic()
        server.start()  # same port, same store
        fault_record.recover_s = round(time.monotonic() - down_at, 1)
        report = run.join()
        finished = client.get_run(report.run_id)
        history = {
            key: client.get_metric_history(report.run_id, key) for key in ("train_loss", "val_dice")
        }
    finally:
        server.stop()
    assert finished.info.status == "FINISHED"
    for key, metrics in history.items():  # every epoch, each once
        assert sorted(m.step for m in metrics) == list(range(EPOCHS)), key
    fault_record.dice = float(max(history["val_dice"], key=lambda m: m.step).value)
    fault_record.intervals_lost = 0  # training itself never stopped
    assert abs(fault_record.dice - baseline_dice) <= DICE_TOLERANCE
    fault_record.mark_survived()
