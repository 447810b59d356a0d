from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from tests.support.engine import tiny_trainer as _trainer
from unet_core.engine import (
    EPOCH_METRICS,
    EarlyStoppingConfig,
    Hooks,
    capture_state,
    fit,
    load_checkpoint,
    save_checkpoint,
)


def test_fit_learns_and_reports_metrics() -> None:
    trainer = _trainer(epochs=6)
    result = fit(trainer)
    first, last = result.history[0].metrics, result.history[-1].metrics
    assert {"train_loss", "val_loss", "val_dice", "val_iou", "lr"} <= set(last)
    assert last["train_loss"] < first["train_loss"]
    assert result.best_metric == max(h.metrics["val_dice"] for h in result.history)


@pytest.mark.parametrize("augment", [False, True])
def test_resume_after_epoch_k_matches_uninterrupted_run(tmp_path, augment: bool) -> None:
    full = _trainer(epochs=4, augment=augment)
    fit(full)

    saved = {}
    first = _trainer(epochs=4, augment=augment)
    first.hooks = Hooks(on_epoch_end=lambda r, state: saved.setdefault(r.epoch, state))
    first.cfg = first.cfg.model_copy(update={"epochs": 2})  # "killed" after epoch 2
    fit(first)
    path = save_checkpoint(saved[1], tmp_path / "ckpt.pt")

    resumed = _trainer(epochs=4, augment=augment)
    result = fit(resumed, resume=load_checkpoint(path))
    assert [h.epoch for h in result.history] == [0, 1, 2, 3]
    for (name, a), b in zip(
        full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_early_stopping_stops_after_patience() -> None:
    trainer = _trainer(epochs=30, patience=2)
    trainer.optimizer.param_groups[0]["lr"] = 0.0  # nothing improves after epoch 0
    trainer.schedule.base_lrs = [0.0, 0.0]
    result = fit(trainer)
    assert result.stopped_early
    assert len(result.history) == 3


def test_unknown_monitor_names_the_valid_metrics() -> None:
    with pytest.raises(ValidationError, match="val_dice"):
        EarlyStoppingConfig(monitor="val_dcie")


def test_every_monitor_choice_is_reported_each_epoch() -> None:
    result = fit(_trainer(epochs=1))
    assert set(EPOCH_METRICS) <= set(result.history[0].metrics)


def test_checkpoint_loads_with_weights_only(tmp_path) -> None:
    trainer = _trainer(epochs=1)
    result = fit(trainer)
    state = capture_state(trainer, 0, result, 0)
    save_checkpoint(state, tmp_path / "checkpoint.pt")
    loaded = load_checkpoint(tmp_path)  # a folder resolves to its checkpoint.pt
    assert loaded["epoch"] == 0
    assert not list(tmp_path.glob(".tmp-*")), "atomic save left a temp file"
    torch.save({"evil": object()}, tmp_path / "pickled.pt")
    with pytest.raises(Exception, match=r"[Ww]eights only"):
        load_checkpoint(tmp_path / "pickled.pt")
