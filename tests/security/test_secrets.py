"""No secret reaches MLflow, Prefect's logs or the console: a tiny training through the
CLI runs with canary values in the secret variables users set (AWS keys, the Ray token,
a database password), then every place it wrote to is searched for them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.support.cli_training import CliTraining

pytestmark = pytest.mark.slow


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


def test_canary_secrets_leak_nowhere(cli_training: CliTraining) -> None:
    proc, project = cli_training.proc, cli_training.project
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "=== unetflow finished ===" in proc.stdout
    places = {
        "stdout/stderr": cli_training.output,
        "MLflow params/tags": _mlflow_texts(project / ".unetflow" / "mlflow.db"),
        "Prefect logs": _prefect_logs(cli_training.prefect_home),
    }
    artifacts = [p for p in (project / ".unetflow" / "mlartifacts").rglob("*") if p.is_file()]
    assert len(artifacts) > 3 and "train.epochs" in places["MLflow params/tags"]
    for name, value in cli_training.canaries.items():
        for where, text in places.items():
            assert value not in text, f"{name} found in {where}"
        leaked = [p for p in artifacts if value.encode() in p.read_bytes()]
        assert not leaked, f"{name} found in {leaked}"
