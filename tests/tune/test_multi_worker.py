"""A trial whose config asks for several workers runs a Ray Train `TorchTrainer` inside
the trial, and its per-epoch reports (with the trial's costs) reach Tune."""

from __future__ import annotations

from pathlib import Path

import pytest

from tune.search import SearchConfig, run_search
from unetflow.config import load_config

SPACE = Path(__file__).resolve().parents[2] / "tune" / "spaces" / "hpo.yaml"


@pytest.mark.slow
@pytest.mark.integration
def test_multi_worker_trial_reports_every_epoch(
    ray_local: None, prepared_dir: Path, project_dir: Path
) -> None:
    base = load_config(
        None,
        {
            "model.base_channels": 8,
            "model.depth": 2,
            "scaling.num_workers": 2,
            "scaling.cpus_per_worker": 1,
        },
    )
    search = SearchConfig(
        name="multi", space=str(SPACE), num_samples=1, epochs=2, scheduler="fifo", track=False
    )
    result = run_search(search, project_dir, base, prepared_dir)

    (trial,) = result.trials
    assert trial["error"] is None and trial["epochs"] == 2
    assert trial["last"]["params"] > 0 and "checkpoint_path" in trial["last"]
    train_runs = list((Path(result.storage_path) / "train").glob("train-*"))
    assert len(train_runs) == 1, "the trial's TorchTrainer stores its run beside the search"
