"""Iteration-based training: validation every N epochs, checkpoints every N epochs or M
minutes (the best and the last always), resume repeating at most one interval."""

from __future__ import annotations

import contextlib

import torch

from tests.support.engine import tiny_trainer as _trainer
from unet_core.engine import (
    CheckpointCadence,
    EpochResult,
    Hooks,
    fit,
    load_checkpoint,
    save_checkpoint,
)


def test_validates_every_n_epochs_and_the_last() -> None:
    trainer = _trainer(epochs=7)
    trainer.cfg = trainer.cfg.model_copy(update={"val_every": 3})
    calls = []
    validate = trainer.validate
    trainer.validate = lambda: calls.append(1) or validate()  # count the evaluations
    result = fit(trainer)
    assert len(calls) == 3
    assert [h.epoch for h in result.history if h.validated] == [2, 5, 6]
    assert all("val_dice" not in h.metrics for h in result.history if not h.validated)
    assert {"train_loss", "lr"} <= set(result.history[0].metrics)
    assert [h.last for h in result.history] == [False] * 6 + [True]


def test_early_stopping_patience_counts_validations() -> None:
    trainer = _trainer(epochs=30, patience=2)
    trainer.cfg = trainer.cfg.model_copy(update={"val_every": 2})
    trainer.optimizer.param_groups[0]["lr"] = 0.0  # nothing improves after the first check
    trainer.schedule.base_lrs = [0.0, 0.0]
    result = fit(trainer)
    assert result.stopped_early
    # validations at epochs 1 (best), 3 and 5 (stale twice): stop after epoch 5
    assert len(result.history) == 6
    assert result.history[-1].last and result.best_epoch == 1


def _epoch(epoch: int, improved: bool = False, last: bool = False) -> EpochResult:
    return EpochResult(epoch, {}, improved, 0.0, validated=improved, last=last)


def test_checkpoint_every_n_epochs_plus_best_and_last() -> None:
    cadence = CheckpointCadence(every_epochs=3, every_minutes=None)
    due = [e for e in range(10) if cadence.due(_epoch(e, improved=e == 4, last=e == 9))]
    assert due == [2, 4, 7, 9]  # a new best restarts the interval


def test_checkpoint_every_m_minutes_on_a_fake_clock() -> None:
    now = [0.0]
    cadence = CheckpointCadence(every_epochs=None, every_minutes=2.5, clock=lambda: now[0])
    due = []
    for epoch in range(8):
        now[0] += 60.0  # each epoch takes a minute
        if cadence.due(_epoch(epoch, last=epoch == 7)):
            due.append(epoch)
    assert due == [2, 5, 7]
    assert not CheckpointCadence(None, None).due(_epoch(0)), "no cadence: best and last only"


def test_resume_after_a_kill_repeats_at_most_one_interval(tmp_path) -> None:
    full = _trainer(epochs=8)
    full.cfg = full.cfg.model_copy(update={"val_every": 4})
    fit(full)

    every, killed_after, saved = 3, 5, {}
    cadence = CheckpointCadence(every_epochs=every, every_minutes=None)

    def on_epoch_end(result: EpochResult, state: dict) -> None:
        if result.epoch > killed_after:
            raise KeyboardInterrupt  # the process dies before this epoch's checkpoint
        if cadence.due(result):
            saved[result.epoch] = save_checkpoint(state, tmp_path / f"{result.epoch}.pt")

    first = _trainer(epochs=8)
    first.cfg = full.cfg
    first.hooks = Hooks(on_epoch_end=on_epoch_end)
    with contextlib.suppress(KeyboardInterrupt):
        fit(first)
    assert sorted(saved) == [2, 3]  # the interval, then the first validation (a new best)
    latest = load_checkpoint(saved[max(saved)])
    assert killed_after - latest["epoch"] <= every

    resumed = _trainer(epochs=8)
    resumed.cfg = full.cfg
    result = fit(resumed, resume=latest)
    assert [h.epoch for h in result.history] == list(range(8))
    for (name, a), b in zip(
        full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
