"""The weight average: its math, what validation and checkpoints use, exact resume, and
checkpoints written without one."""

from __future__ import annotations

import pytest
import torch

from tests.support.engine import tiny_trainer
from unet_core.engine import (
    Hooks,
    TrainConfig,
    WeightEma,
    capture_state,
    fit,
    load_checkpoint,
    restore_state,
    save_checkpoint,
)
from unet_core.engine.results import FitResult


def _trainer(epochs: int, decay: float | None = 0.9):
    """The engine's tiny trainer with a weight average (a short horizon: few steps)."""
    trainer = tiny_trainer(epochs)
    trainer.cfg = trainer.cfg.model_copy(update={"ema_decay": decay})
    return trainer


def test_the_average_is_on_by_default_and_off_with_none() -> None:
    assert TrainConfig().ema_decay == 0.999
    trainer = tiny_trainer(1)
    fit(trainer)
    assert trainer.ema is not None and trainer.served_model() is trainer.ema.module
    off = _trainer(1, decay=None)
    fit(off)
    assert off.ema is None and off.served_model() is off.model


def _net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))


def test_update_is_the_warmed_up_exponential_average() -> None:
    net = _net()
    ema = WeightEma(net, decay=0.9)
    expected = net[0].weight.detach().clone()
    for step in range(1, 40):
        with torch.no_grad():
            net[0].weight.add_(1.0)  # the optimizer moved the weights
        decay = min(0.9, (1 + step) / (10 + step))
        expected = decay * expected + (1 - decay) * net[0].weight.detach()
        ema.update()
        assert ema.decay_at(step) == pytest.approx(decay)
        torch.testing.assert_close(ema.module[0].weight, expected)
    assert ema.decay_at(1) == pytest.approx(2 / 11)  # early: mostly the new weights
    assert ema.decay_at(10_000) == 0.9  # late: the configured decay
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_served_model_takes_the_trained_batchnorm_statistics() -> None:
    net = _net()
    ema = WeightEma(net, decay=0.99)
    net.train()
    net(torch.randn(8, 3) * 5 + 3)  # running statistics move
    served = ema.served()
    assert not served.training
    torch.testing.assert_close(served[1].running_mean, net[1].running_mean)
    assert served[1].num_batches_tracked == net[1].num_batches_tracked == 1


def test_validation_and_checkpoint_use_the_average_and_keep_the_trained_weights() -> None:
    trainer = _trainer(epochs=2)
    result = fit(trainer)
    state = capture_state(trainer, 1, result, 0)
    assert trainer.ema is not None and trainer.ema.updates == 2 * 3  # 12 images, batch 4
    served, trained = trainer.ema.module.state_dict(), trainer.model.state_dict()
    name = "head.weight" if "head.weight" in served else next(iter(served))
    assert not torch.equal(served[name], trained[name]), "the average differs"
    for key in served:
        torch.testing.assert_close(state["model"][key], served[key])
        torch.testing.assert_close(state["trained_model"][key], trained[key])
    assert state["ema_updates"] == 6


def test_without_ema_the_checkpoint_serves_the_trained_weights() -> None:
    trainer = _trainer(epochs=1, decay=None)
    result = fit(trainer)
    state = capture_state(trainer, 0, result, 0)
    assert trainer.ema is None and "trained_model" not in state and "ema_updates" not in state
    for key, value in trainer.model.state_dict().items():
        torch.testing.assert_close(state["model"][key], value)


def test_resume_restores_the_average_exactly(tmp_path) -> None:
    full = _trainer(epochs=4)
    fit(full)
    saved: dict[int, dict] = {}
    first = _trainer(epochs=4)
    first.hooks = Hooks(on_epoch_end=lambda r, state: saved.setdefault(r.epoch, state))
    first.cfg = first.cfg.model_copy(update={"epochs": 2})
    fit(first)
    path = save_checkpoint(saved[1], tmp_path / "ckpt.pt")

    resumed = _trainer(epochs=4)
    fit(resumed, resume=load_checkpoint(path))  # weights_only=True
    assert full.ema is not None and resumed.ema is not None
    assert resumed.ema.updates == full.ema.updates
    for (name, a), b in zip(
        full.ema.module.state_dict().items(),
        resumed.ema.module.state_dict().values(),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_a_checkpoint_without_an_average_loads_and_starts_one(tmp_path) -> None:
    """Checkpoints written before the average existed hold the trained weights only."""
    old = _trainer(epochs=1, decay=None)
    state = capture_state(old, 0, fit(old), 0)
    path = save_checkpoint(state, tmp_path / "old.pt")

    trainer = _trainer(epochs=3)
    trainer.ema = WeightEma(trainer.model, 0.999)
    trainer.ema.updates = 17  # whatever it held is replaced
    restore_state(trainer, load_checkpoint(path), FitResult())
    assert trainer.ema.updates == 0
    for key, value in state["model"].items():
        torch.testing.assert_close(trainer.model.state_dict()[key], value)
        torch.testing.assert_close(trainer.ema.module.state_dict()[key], value)
    result = fit(_trainer(epochs=3), resume=load_checkpoint(path))  # and training goes on
    assert [h.epoch for h in result.history] == [0, 1, 2]
