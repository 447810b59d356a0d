"""A search straight on a raw images/ + masks/ folder: prepared once, as for training."""

from __future__ import annotations

from pathlib import Path

import pytest

from tune.search import SearchConfig, run_search
from unetflow.config import load_config
from unetflow.datasets import folder_hash

SPACES = Path(__file__).resolve().parents[2] / "tune" / "spaces"
TINY = {
    "model.base_channels": 8,
    "model.depth": 2,
    "train.batch_size": 4,
    "scaling.num_workers": 1,
    "data.path": "raw",
}


@pytest.mark.slow
def test_search_on_a_raw_folder_prepares_it_once(
    ray_local: None, raw_folder, tmp_path: Path
) -> None:
    raw = raw_folder(tmp_path, n=12)
    search = SearchConfig(
        name="folder", space=str(SPACES / "hpo.yaml"), num_samples=1, epochs=1, track=False
    )
    result = run_search(search, tmp_path, load_config(None, TINY))

    assert not result.errors and len(result.trials) == 1
    assert 0.0 <= result.best_metrics["val_dice"] <= 1.0
    prepared = sorted(p.name for p in (tmp_path / ".unetflow" / "prepared").iterdir())
    assert prepared == [folder_hash(raw, spatial_dims=2, in_channels=1)]
