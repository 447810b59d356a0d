"""Worker output: a worker's line (the resume notice) reaches the driver once under Ray
Train's print patch."""

from __future__ import annotations

import builtins
import logging

import pytest
from ray.train.v2._internal.logging import patch_print

from unetflow.ray_train import say


def test_worker_line_is_emitted_once_under_ray_trains_print_patch(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Ray Train V2 workers run with this `print`; their sys.stdout is a wrapper (here capsys's),
    # so a plain print() is both printed and logged: the driver showed every line twice.
    monkeypatch.setattr(builtins, "print", patch_print.redirected_print)
    with caplog.at_level(logging.INFO):
        say("resuming after epoch 3 from /ckpt")

    out = capsys.readouterr().out
    logged = [r.getMessage() for r in caplog.records if "epoch 3" in r.getMessage()]
    assert out.count("resuming after epoch 3 from /ckpt") + len(logged) == 1, (out, logged)
