"""Test-split evaluation of a trained run: one read, one prediction, the served path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from unet_core.data import PreparedDataset, PreparedStore
from unet_core.models import create_model
from unetflow.config import parse_config
from unetflow.training import _package, evaluate_split, evaluate_test


@pytest.mark.parametrize(("mode", "channels"), [("binary", 1), ("multiclass", 2)])
def test_one_pass_gives_the_metrics_of_a_plain_evaluation(
    prepared_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, channels: int
) -> None:
    cfg = parse_config(
        {
            "model": {"preset": "unet", "base_channels": 8, "depth": 2, "out_channels": channels},
            "loss": {"name": "dice_bce" if mode == "binary" else "ce", "mode": mode},
        }
    )
    torch.manual_seed(0)
    weights = create_model(cfg.model).state_dict()
    package = _package(cfg, weights, prepared_dir, tmp_path)
    expected = evaluate_split(cfg, weights, prepared_dir, "test")

    reads: list[str] = []
    real = PreparedStore.load_case
    monkeypatch.setattr(
        PreparedStore,
        "load_case",
        lambda self, stem, **kw: reads.append(stem) or real(self, stem, **kw),
    )
    test = evaluate_test(cfg, weights, package, prepared_dir)

    test_stems = PreparedDataset(prepared_dir, "test").stems
    assert reads == list(test_stems)  # each case read once, for metrics, table and example
    assert set(test.metrics) == set(expected) - {"test_loss"}
    for key, value in expected.items():
        if key != "test_loss":
            assert test.metrics[key] == pytest.approx(value, abs=1e-9), key
    raw = PreparedDataset(prepared_dir, "test", normalize=False)
    assert test.prediction is not None and len(test.prediction.preds) == len(raw)
    np.testing.assert_array_equal(test.example, raw.raw(0)[0][None])
