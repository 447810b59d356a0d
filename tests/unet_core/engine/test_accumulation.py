"""Gradient accumulation: leftovers step, the schedule ends where the loop ends, DDP
all-reduces once per optimizer step, and the loss is read back once per epoch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unet_core.engine import (
    OptimConfig,
    Schedule,
    SchedulerConfig,
    TrainConfig,
    build_optimizer,
    optimizer_steps,
    train_one_epoch,
)

CPU = torch.device("cpu")


def _linear_data(n: int) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 3, generator=g), torch.randn(n, 1, generator=g))


def _cfg(accumulate: int, **kw) -> TrainConfig:
    return TrainConfig(accumulate_steps=accumulate, grad_clip_norm=None, amp="off", **kw)


def test_leftover_micro_batches_step_with_their_true_count() -> None:
    """3 batches, accumulate 2: step 1 on the mean of batches 0-1, step 2 on batch 2 alone
    (scaled by 1, not 1/2). The old loop dropped batch 2's gradient entirely."""
    data = _linear_data(6)
    loader = DataLoader(data, batch_size=2)
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    reference = nn.Linear(3, 1)
    reference.load_state_dict(model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train_one_epoch(model, loader, nn.MSELoss(), opt, _cfg(2), device=CPU)

    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    batches = list(loader)
    for group in (batches[:2], batches[2:]):
        ref_opt.zero_grad()
        for x, y in group:
            (nn.functional.mse_loss(reference(x), y) / len(group)).backward()
        ref_opt.step()
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(("batches", "accumulate"), [(7, 3), (6, 3), (5, 1), (2, 4)])
def test_schedule_reaches_its_end_exactly_at_the_last_step(batches: int, accumulate: int) -> None:
    loader = DataLoader(_linear_data(batches), batch_size=1)
    model = nn.Linear(3, 1)
    opt = build_optimizer(model, OptimConfig(lr=1.0))
    epochs = 2
    steps = optimizer_steps(len(loader), accumulate)
    schedule = Schedule(opt, SchedulerConfig(name="poly", min_lr_ratio=0.1), steps, epochs)
    for _ in range(epochs):
        train_one_epoch(
            model, loader, nn.MSELoss(), opt, _cfg(accumulate), device=CPU, schedule=schedule
        )
    assert schedule.step_count == schedule.total_steps
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)  # the final lr, reached


def test_loss_is_read_back_per_interval_not_per_step(monkeypatch) -> None:
    """Host-device syncs (`Tensor.item`, `float(tensor)`) do not grow with the steps."""
    from unet_core.engine import Hooks

    def syncs(n_batches: int) -> tuple[int, list[tuple[int, float]]]:
        loader = DataLoader(_linear_data(n_batches), batch_size=1)
        model = nn.Linear(3, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        logged: list[tuple[int, float]] = []
        hooks = Hooks(on_step=lambda step, loss: logged.append((step, loss)))
        count = [0]
        item, to_float = torch.Tensor.item, torch.Tensor.__float__

        def counting_item(t):
            count[0] += 1
            return item(t)

        def counting_float(t):
            count[0] += 1
            return to_float(t)

        with monkeypatch.context() as m:
            m.setattr(torch.Tensor, "item", counting_item)
            m.setattr(torch.Tensor, "__float__", counting_float)
            train_one_epoch(
                model,
                loader,
                nn.MSELoss(),
                opt,
                _cfg(1, log_every_steps=4),
                device=CPU,
                hooks=hooks,
            )
        return count[0], logged

    few, _ = syncs(4)
    many, logged_many = syncs(16)
    assert many - few == 3  # one per extra logging interval, none per step
    assert [s for s, _ in logged_many] == [3, 7, 11, 15]
    assert all(loss > 0 for _, loss in logged_many)


def _ddp_rank(rank: int, world: int, init_file: str, out: str, accumulate: int) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(nn.Linear(3, 1))
    calls = [0]

    def counting_allreduce(state, bucket):
        calls[0] += 1
        return (
            dist.all_reduce(bucket.buffer(), async_op=True)
            .get_future()
            .then(lambda fut: fut.value()[0] / world)
        )

    model.register_comm_hook(None, counting_allreduce)
    loader = DataLoader(_linear_data(10), batch_size=1)  # 10 micro-batches per rank
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    train_one_epoch(model, loader, nn.MSELoss(), opt, _cfg(accumulate), device=CPU)
    if rank == 0:
        torch.save({"allreduces": calls[0]}, out)
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_all_reduces_once_per_optimizer_step(tmp_path: Path) -> None:
    """10 micro-batches, accumulate 4: 3 optimizer steps (4 + 4 + 2), so 3 all-reduces."""
    out = tmp_path / "rank0.pt"
    mp.spawn(_ddp_rank, args=(2, str(tmp_path / "init"), str(out), 4), nprocs=2, join=True)
    assert torch.load(out, weights_only=True)["allreduces"] == 3
