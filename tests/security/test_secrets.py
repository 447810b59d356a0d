"""No secret reaches MLflow, Prefect's logs or the console: a tiny training through the
CLI runs with canary values in the secret variables users set (AWS keys, the Ray token,
a database password), then every place it wrote to is searched for them."""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _canaries() -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": f"AKIACANARY{secrets.token_hex(5).upper()}",
        "AWS_SECRET_ACCESS_KEY": f"canary-aws-{secrets.token_hex(12)}",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),  # a valid token: the local Ray uses it
        "PGPASSWORD": f"canary-db-{secrets.token_hex(8)}",
        "MLFLOW_TRACKING_PASSWORD": f"canary-mlflow-{secrets.token_hex(8)}",
    }


def _mlflow_texts(store: Path) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{store}")
    texts: list[object] = []
    for exp in client.search_experiments():
        for run in client.search_runs([exp.experiment_id]):
            texts += [run.data.params, run.data.tags, run.info.run_name]
    for mv in client.search_model_versions():
        texts += [mv.tags, mv.description, mv.source]
    return repr(texts)


def _prefect_logs(home: Path) -> str:
    with sqlite3.connect(home / "prefect.db") as db:
        rows = db.execute("SELECT message FROM log").fetchall()
        params = db.execute("SELECT parameters FROM flow_run").fetchall()
    return repr(rows + params)


def test_canary_secrets_leak_nowhere(tmp_path: Path, raw_folder) -> None:
    project = tmp_path / "project"
    project.mkdir()
    raw_folder(project, n=8)
    canaries = _canaries()
    ray_tmp = tempfile.mkdtemp(prefix="rs-", dir="/tmp")  # short: Ray's Unix socket paths
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_ADDRESS"))}
    env |= canaries | {
        "PYTHONPATH": str(ROOT),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "RAY_TMPDIR": ray_tmp,
    }
    env.pop("PREFECT_API_URL", None)
    overrides = [
        "data.path=raw",
        "train.epochs=1",
        "model.base_channels=4",
        "model.depth=2",
        "scaling.num_workers=1",
    ]
    argv = ["train", "--project-dir", str(project)]
    for o in overrides:
        argv += ["--set", o]
    try:
        proc = subprocess.run(
            [str(Path(sys.executable).with_name("unetflow")), *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "=== unetflow finished ===" in proc.stdout
    places = {
        "stdout/stderr": proc.stdout + proc.stderr,
        "MLflow params/tags": _mlflow_texts(project / ".unetflow" / "mlflow.db"),
        "Prefect logs": _prefect_logs(tmp_path / "prefect"),
    }
    artifacts = [p for p in (project / ".unetflow" / "mlartifacts").rglob("*") if p.is_file()]
    assert len(artifacts) > 3 and "train.epochs" in places["MLflow params/tags"]
    for name, value in canaries.items():
        for where, text in places.items():
            assert value not in text, f"{name} found in {where}"
        leaked = [p for p in artifacts if value.encode() in p.read_bytes()]
        assert not leaked, f"{name} found in {leaked}"
