"""Worker output: each progress line reaches the driver once under Ray Train's print patch."""

from __future__ import annotations

import builtins
import logging

import pytest
from ray.train.v2._internal.logging import patch_print

from unet_core.engine import EpochResult
from unetflow.config import parse_config
from unetflow.ray_train import _print_progress


def test_progress_line_is_emitted_once_under_ray_trains_print_patch(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Ray Train V2 workers run with this `print`; their sys.stdout is a wrapper (here capsys's),
    # so a plain print() is both printed and logged: the driver showed every line twice.
    monkeypatch.setattr(builtins, "print", patch_print.redirected_print)
    metrics = {"train_loss": 0.5, "val_loss": 0.4, "val_dice": 0.9, "val_iou": 0.8}
    result = EpochResult(epoch=2, metrics=metrics, seconds=1.25, improved=True)
    with caplog.at_level(logging.INFO):
        _print_progress(parse_config({"train": {"epochs": 7}}), result)

    out = capsys.readouterr().out
    logged = [r.getMessage() for r in caplog.records if "epoch 3/7" in r.getMessage()]
    assert out.count("epoch 3/7 train_loss=0.5000") + len(logged) == 1, (out, logged)
    assert "val_dice=0.9000 val_iou=0.8000 (1.2s, best)" in out
