"""`evaluate` under a real 2-process gloo group equals one process on the whole split,
even when the ranks' BatchNorm statistics have drifted apart (as they do under DDP)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, TensorDataset

from unet_core.engine import evaluate
from unet_core.engine.samplers import ShardSampler
from unet_core.metrics import MetricAccumulator

pytestmark = pytest.mark.slow


def _data() -> TensorDataset:
    g = torch.Generator().manual_seed(3)
    masks = (torch.rand(7, 16, 16, generator=g) > 0.5).long()  # odd count: uneven shards
    return TensorDataset(
        masks[:, None].float() + 0.5 * torch.randn(7, 1, 16, 16, generator=g), masks
    )


def _model() -> torch.nn.Module:
    """Logits = BatchNorm(x): the mask is decided by the running statistics themselves."""
    model = torch.nn.Sequential(torch.nn.BatchNorm2d(1))
    model[0].running_mean.fill_(0.5)
    return model


def _rank(rank: int, world: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    model = _model()
    for module in model.modules():  # ranks' running statistics drift apart under DDP
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.add_(0.5 * rank)
            module.running_var.mul_(1 + 3 * rank)
    data = _data()
    loader = DataLoader(data, batch_size=2, sampler=ShardSampler(len(data), rank, world))
    acc = MetricAccumulator(num_classes=1, mode="binary")
    metrics = evaluate(model, loader, acc, device=torch.device("cpu"))
    if rank == 0:
        torch.save({"metrics": metrics, "model": model.state_dict()}, out)
    dist.destroy_process_group()


def test_two_rank_evaluate_equals_single_process(tmp_path: Path) -> None:
    out = tmp_path / "rank0.pt"
    mp.spawn(_rank, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    saved = torch.load(out, weights_only=True)
    model = _model()
    model.load_state_dict(saved["model"])
    acc = MetricAccumulator(num_classes=1, mode="binary")
    single = evaluate(model, DataLoader(_data(), batch_size=3), acc, device=torch.device("cpu"))
    assert 0.05 < single["val_dice"] < 0.95  # not degenerate: drifted stats would show
    for key in ("val_dice", "val_iou"):
        assert saved["metrics"][key] == pytest.approx(single[key], abs=1e-6)


def _rank_ddp_one_val_case(rank: int, world: int, init_file: str, out: str) -> None:
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    model = DistributedDataParallel(_model())
    model(torch.randn(2, 1, 16, 16)).sum().backward()  # a training step, as in `fit`
    data = TensorDataset(*(t[:1] for t in _data().tensors))  # one case: rank 1 gets none
    loader = DataLoader(data, batch_size=1, sampler=ShardSampler(len(data), rank, world))
    metrics = evaluate(model, loader, MetricAccumulator(num_classes=1), device=torch.device("cpu"))
    if rank == 0:
        torch.save({"metrics": metrics}, out)
    dist.destroy_process_group()


@pytest.mark.timeout(120)  # the bug was a hang: fail instead
def test_ddp_evaluate_with_fewer_cases_than_ranks_does_not_hang(tmp_path: Path) -> None:
    out = tmp_path / "rank0.pt"
    mp.spawn(_rank_ddp_one_val_case, args=(2, str(tmp_path / "init"), str(out)), nprocs=2)
    metrics = torch.load(out, weights_only=True)["metrics"]
    assert 0.0 <= metrics["val_dice"] <= 1.0


def _rank_ddp_ema(rank: int, world: int, init_file: str, out: str) -> None:
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DistributedSampler

    from tests.support.engine import tiny_data, tiny_trainer
    from unet_core.engine import capture_state, fit

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    trainer = tiny_trainer(2)
    data = tiny_data()
    sampler = DistributedSampler(data, num_replicas=world, rank=rank, seed=0)
    trainer.train_loader = DataLoader(data, batch_size=2, sampler=sampler)
    trainer.model = DistributedDataParallel(trainer.model)
    trainer.cfg = trainer.cfg.model_copy(update={"ema_decay": 0.9})
    result = fit(trainer)
    state = capture_state(trainer, 1, result, 0)
    torch.save(
        {"model": state["model"], "val_dice": result.history[-1].metrics["val_dice"]},
        f"{out}.{rank}",
    )
    dist.destroy_process_group()


def test_ddp_ranks_keep_the_same_weight_average(tmp_path: Path) -> None:
    """Each rank averages its unwrapped model: the weights are the same on every rank,
    so the averages (and what each rank would checkpoint and validate) are too."""
    out = str(tmp_path / "ema")
    mp.spawn(_rank_ddp_ema, args=(2, str(tmp_path / "init"), out), nprocs=2, join=True)
    first, second = (torch.load(f"{out}.{r}", weights_only=True) for r in (0, 1))
    assert first["val_dice"] == second["val_dice"]  # validation used rank 0's BN stats
    # BatchNorm statistics stay per rank (DDP syncs them at each forward, from rank 0),
    # as they do for the trained model; rank 0 checkpoints its own. Weights must agree.
    weights = [k for k in first["model"] if "running_" not in k and "num_batches" not in k]
    assert weights
    for key in weights:
        torch.testing.assert_close(first["model"][key], second["model"][key], msg=key)
