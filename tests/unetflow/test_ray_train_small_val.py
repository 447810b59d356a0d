"""Odd but valid data trains on 2 Ray workers: fewer validation cases than workers
(a rank with no validation batch used to hang the others in DDP's buffer broadcast),
a 5x7 image size and 0/255 masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unet_core.data import read_manifest
from unetflow.config import parse_config
from unetflow.datasets import resolve_for
from unetflow.ray_train import fit_with_ray

pytestmark = pytest.mark.slow


def _folder(root: Path, n: int = 5) -> Path:
    rng = np.random.default_rng(1)
    for sub in ("images", "masks"):
        (root / "raw" / sub).mkdir(parents=True)
    for i in range(n):
        mask = rng.random((5, 7)) > 0.5
        image = (mask * 120 + rng.integers(0, 60, (5, 7))).astype(np.uint8)
        Image.fromarray(image).save(root / "raw" / "images" / f"c{i}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "raw" / "masks" / f"c{i}.png")
    return root / "raw"


@pytest.mark.timeout(420)  # a regression hangs: fail instead
def test_one_case_val_split_on_two_workers_does_not_hang(tmp_path: Path, ray_local) -> None:
    _folder(tmp_path)
    cfg = parse_config(
        {
            "name": "smallval",
            "data": {"path": "raw"},
            "model": {"preset": "unet", "base_channels": 4, "depth": 2},
            "train": {"epochs": 2, "batch_size": 2},
            "scaling": {"num_workers": 2},
            "checkpoint": {"max_failures": 0},
        }
    )
    data_dir, _ = resolve_for(tmp_path, cfg)
    manifest = read_manifest(data_dir)
    assert manifest.count("val") == 1 and manifest.spatial_shape == (5, 7)
    assert manifest.labels == (0, 1)  # 0/255 masks read as binary
    outcome = fit_with_ray(cfg, data_dir, "smallval", str(tmp_path / "ray"))
    assert [int(m["epoch"]) for m in outcome.history] == [0, 1]
    assert all(0.0 <= m["val_dice"] <= 1.0 for m in outcome.history)
