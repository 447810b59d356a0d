"""A real search on local Ray: multi-objective Optuna over the NAS space, MLflow parent and
child runs, the Pareto front, and the chosen config retrained and registered."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from tune.mlflow_logging import child_runs
from tune.search import SearchConfig, run_search
from unetflow.config import load_config
from unetflow.tracking import tracking_uri

SPACES = Path(__file__).resolve().parents[2] / "tune" / "spaces"
TINY = {
    "model.base_channels": 8,
    "model.depth": 2,
    "train.batch_size": 8,
    "scaling.num_workers": 1,
    "tracking.registered_model": "unet-tune-test",
}


@pytest.mark.slow
@pytest.mark.integration
def test_nas_search_tracks_front_and_registers_best(
    ray_local: None, prepared_dir: Path, project_dir: Path
) -> None:
    search = SearchConfig(
        name="nas-test",
        space=str(SPACES / "nas.yaml"),
        num_samples=2,
        epochs=2,
        search_alg="optuna",
        cost="params",
        retrain=True,
    )
    result = run_search(search, project_dir, load_config(None, TINY), prepared_dir)

    assert len(result.trials) == 2 and not result.errors
    assert 1 <= len(result.front) <= 2
    assert result.best_trial_id in {r["trial_id"] for r in result.trials}
    assert 0.0 <= result.best_metrics["val_dice"] <= 1.0 and result.best_metrics["params"] > 0
    assert result.best_config.model.base_channels in (8, 16, 32)

    uri = tracking_uri(project_dir)
    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["num_trials"] == 2
    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id)}
    assert {"pareto_front.json", "pareto_front.png", "best_config.yaml"} <= artifacts

    children = child_runs(uri, parent.info.experiment_id, "nas-test")
    assert len(children) == 2
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] == result.parent_run_id
        assert run.info.status == "FINISHED"
        assert "model.depth" in run.data.params and "sampled.model.preset" in run.data.params
        history = client.get_metric_history(run.info.run_id, "val_dice")
        assert len(history) == run.data.metrics["epochs_run"] >= 1

    report = result.registered
    version = client.get_model_version(report.registered_name, report.version)
    assert version.tags["unetflow.search_name"] == "nas-test"
    assert version.tags["unetflow.trial_id"] == result.best_trial_id
    assert version.tags["unetflow.trained_on"] == "train+val"
    assert "test_dice" in report.test_metrics
