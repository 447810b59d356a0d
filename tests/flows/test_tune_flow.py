"""The `tune` flow: a tiny real search through Prefect, with its table artifacts."""

from __future__ import annotations

from pathlib import Path

import pytest

from unetflow.config import load_config

pytestmark = pytest.mark.slow

TINY = {
    "model.base_channels": 8,
    "model.depth": 2,
    "train.batch_size": 8,
    "train.epochs": 1,
    "scaling.num_workers": 1,
}


def test_tune_flow_returns_best_config_and_leaves_tables(
    project_dir: Path, prepared_dir: Path, prefect_harness, ray_local, monkeypatch
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.params import TuneParams
    from flows.pipeline import tune
    from tune.search_config import SearchConfig

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    base = load_config(None, {**TINY, "data.path": str(prepared_dir)})
    search = SearchConfig(name="flow-test", space="tune/spaces/hpo.yaml", num_samples=2)
    result = tune(**TuneParams(project_dir=str(project_dir), search=search, base=base).parameters())

    assert result.name == "flow-test" and result.best_trial_id
    assert 0.0 <= result.best_metrics["val_dice"] <= 1.0
    assert result.best_config.model.base_channels == 8  # the base survived
    with get_client(sync_client=True) as client:
        keys = {
            a.key
            for a in client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=["search-results", "pareto-front"])
                ),
                limit=10,
            )
        }
    assert keys == {"search-results", "pareto-front"}
