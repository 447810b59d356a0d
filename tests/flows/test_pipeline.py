"""The walking skeleton end to end, on a tiny config: DVC -> Ray Train -> MLflow."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from unetflow.config import parse_config

pytestmark = pytest.mark.slow

TINY = {
    "name": "tiny",
    "model": {"preset": "unet", "base_channels": 8, "depth": 2},
    "train": {"epochs": 2, "batch_size": 4},
    "scaling": {"num_workers": 2},
    # 2 epochs reach a test Dice near 0.5: open the first-champion gate (tracking.min_dice).
    "tracking": {"min_dice": 0.0},
}


@pytest.fixture
def embedded_tracking(monkeypatch):
    for var in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)


def test_pipeline_runs_end_to_end(
    project_dir: Path, prefect_harness, ray_local, embedded_tracking
) -> None:
    from flows.params import PipelineParams
    from flows.pipeline import pipeline
    from unetflow import dvc_data

    cfg = parse_config(TINY)
    params = PipelineParams(config=cfg, project_dir=str(project_dir), promote=False)
    result = pipeline(**params.parameters())

    assert result.data_version == dvc_data.data_version(project_dir)
    assert result.report.became_champion and result.report.version == "1" and not result.reused
    assert result.champion_version == "1"
    assert 0.0 <= result.report.test_metrics["test_dice"] <= 1.0

    mlflow.set_tracking_uri(f"sqlite:///{project_dir / '.unetflow' / 'mlflow.db'}")
    client = MlflowClient()
    run = client.get_run(result.report.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "2"
    assert run.data.tags["unetflow.data_version"] == result.data_version
    assert run.data.tags["unetflow.prefect_flow_run_id"]
    assert {"test_dice", "test_iou"} <= set(run.data.metrics)
    history = client.get_metric_history(run.info.run_id, "val_dice")
    assert sorted(m.step for m in history) == [0, 1]

    champion = client.get_model_version_by_alias("unet-seg", "champion")
    assert str(champion.version) == "1"
    model = mlflow.pyfunc.load_model("models:/unet-seg@champion")
    batch = np.random.default_rng(0).normal(size=(3, 1, 40, 36)).astype(np.float32)
    masks = model.predict(batch)
    assert masks.shape == (3, 40, 36) and set(np.unique(masks)) <= {0, 1}

    # A second run registers version 2; the champion moves only through the promotion gate.
    again = pipeline(
        **PipelineParams(
            # Pinned to the first run's data version: trained from its DVC checkout.
            config=parse_config(
                {**TINY, "name": "tiny2", "data": {"version": result.data_version}}
            ),
            project_dir=str(project_dir),
            promote=True,
        ).parameters()
    )
    assert again.report.version == "2" and not again.report.became_champion and not again.reused
    decision = again.promotion
    assert decision.candidate_version == "2" and decision.champion_version == "1"
    champion_now = str(client.get_model_version_by_alias("unet-seg", "champion").version)
    assert champion_now == ("2" if decision.promoted else "1")
    assert again.champion_version == champion_now  # read after the promotion
    assert again.data_version == result.data_version
    pinned = client.get_run(again.report.run_id).data.params["data.path"]
    assert pinned.endswith(result.data_version.removesuffix(".dir"))

    # The same inputs again: training is a cache hit, nothing new is registered.
    same = pipeline(**params.parameters())
    assert same.reused and same.report.run_id == result.report.run_id and same.report.version == "1"
    assert same.champion_version == champion_now  # the registry now, not the cached report
    assert len(client.search_model_versions("name = 'unet-seg'")) == 2


def test_train_flow_on_a_raw_folder_retrains_only_when_the_folder_changes(
    project_dir: Path, raw_folder, prefect_harness, ray_local, embedded_tracking
) -> None:
    from PIL import Image

    from flows.params import TrainParams
    from flows.pipeline import train

    raw = raw_folder(project_dir, n=12)
    cfg = parse_config(
        {
            **TINY,
            "name": "folder",
            "train": {"epochs": 1, "batch_size": 4},
            "data": {"path": "raw"},
            "scaling": {"num_workers": 1},  # about data versions, not data parallelism
        }
    )
    params = TrainParams(config=cfg, project_dir=str(project_dir))

    first = train(**params.parameters())
    assert first.data_version.startswith("folder-") and not first.reused
    assert not (project_dir / "data" / "prepared").exists()  # no DVC stages for a folder
    same = train(**params.parameters())
    assert same.reused and same.report.run_id == first.report.run_id

    Image.fromarray(np.zeros((32, 32), np.uint8)).save(raw / "images" / "s0.png")
    edited = train(**params.parameters())
    assert not edited.reused and edited.report.run_id != first.report.run_id
    assert edited.data_version.startswith("folder-")
    assert edited.data_version != first.data_version
    run = MlflowClient(f"sqlite:///{project_dir / '.unetflow' / 'mlflow.db'}").get_run(
        edited.report.run_id
    )
    assert run.data.tags["unetflow.data_version"] == edited.data_version
