"""SIGTERM during training: the MLflow run ends KILLED and the process exits non-zero."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.slow

LONG = {
    "name": "sigterm",
    "model": {"preset": "unet", "base_channels": 8, "depth": 2},
    "train": {"epochs": 500, "batch_size": 4},
    "scaling": {"num_workers": 1},
}
SCRIPT = """
import json, sys
from pathlib import Path
from unetflow.config import parse_config
from unetflow.training import train_and_register
train_and_register(parse_config(json.loads(sys.argv[2])), Path(sys.argv[1]), "md5-x", {})
"""


def _training_run(client: MlflowClient, proc: subprocess.Popen, timeout: float = 300.0):
    """The subprocess's run once it has logged an epoch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"training exited early with {proc.returncode}"
        experiment = client.get_experiment_by_name("unetflow")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        if runs and client.get_metric_history(runs[0].info.run_id, "val_dice"):
            return runs[0]
        time.sleep(1)
    raise TimeoutError("no epoch was logged in time")


def test_sigterm_ends_run_killed(tmp_path: Path, prepared_dir: Path, ray_local) -> None:
    import ray

    root = tmp_path / "project"
    shutil.copytree(prepared_dir, root / "data" / "prepared")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    # Join the session's Ray instead of starting a second one on the same cores.
    env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    env["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(root), json.dumps(LONG)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = MlflowClient(tracking_uri=f"sqlite:///{root / '.unetflow' / 'mlflow.db'}")
    try:
        run = _training_run(client, proc)
        assert client.get_run(run.info.run_id).info.status == "RUNNING"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
    finished = client.get_run(run.info.run_id)
    assert finished.info.status == "KILLED"
    assert finished.info.end_time is not None
    # System metrics work with the embedded SQLite store too.
    assert any(k.startswith("system/") for k in finished.data.metrics)
