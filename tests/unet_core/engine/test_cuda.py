"""CUDA paths of the engine (marker `gpu`: `make test-gpu` on a GPU machine).

Deselected on CPU (`pytest -m "not gpu"`); on a machine without CUDA they fail loudly
rather than skip, so a GPU check that ran nothing cannot pass.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from tests.support.engine import tiny_data as _data
from unet_core.engine import (
    EarlyStoppingConfig,
    OptimConfig,
    Schedule,
    SchedulerConfig,
    TrainConfig,
    Trainer,
    build_optimizer,
    capture_state,
    fit,
    load_checkpoint,
    memory_format,
    save_checkpoint,
    train_one_epoch,
)
from unet_core.losses import create_loss
from unet_core.metrics import MetricAccumulator
from unet_core.models import create_model

pytestmark = pytest.mark.gpu


@pytest.fixture
def cuda() -> torch.device:
    if not torch.cuda.is_available():
        pytest.fail("no CUDA device: run the gpu tests on a GPU machine")
    return torch.device("cuda")


def _step(device: torch.device, amp: str, dims: int = 2, channels_last: bool = False) -> float:
    torch.manual_seed(0)
    name = "unet3d" if dims == 3 else "unet"
    model = create_model(name, base_channels=8, depth=2).to(device)
    if channels_last:
        model = model.to(memory_format=memory_format(dims + 2))
    size = (16,) * dims
    # 6 steps: an fp16 GradScaler skips the steps whose scaled gradients overflow while
    # it calibrates its scale, so one step alone might legitimately change nothing.
    images = torch.randn(12, 1, *size)
    masks = (torch.rand(12, *size) > 0.5).long()
    cfg = TrainConfig(amp=amp, channels_last=channels_last, batch_size=2)
    opt = build_optimizer(model, OptimConfig(lr=1e-3))
    scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
    before = [p.detach().clone() for p in model.parameters()]
    metrics = train_one_epoch(
        model,
        DataLoader(list(zip(images, masks, strict=True)), batch_size=2, pin_memory=True),
        create_loss("dice_bce"),
        opt,
        cfg,
        device=device,
        scaler=scaler,
    )
    changed = any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert changed, "no parameter moved"
    return metrics["train_loss"]


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_one_training_step_in_mixed_precision(cuda: torch.device, amp: str) -> None:
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.fail("this GPU has no bf16; amp: auto would pick fp16 here")
    loss = _step(cuda, amp)
    assert loss == loss and 0 < loss < 10  # finite: the fp16 GradScaler kept it so


@pytest.mark.parametrize("dims", [2, 3])
def test_channels_last_trains_on_cuda(cuda: torch.device, dims: int) -> None:
    loss = _step(cuda, "bf16" if torch.cuda.is_bf16_supported() else "fp16", dims, True)
    assert loss == loss


def _trainer(device: torch.device, epochs: int) -> Trainer:
    torch.manual_seed(0)
    model = create_model("unet", base_channels=4, depth=2).to(device)
    opt = build_optimizer(model, OptimConfig(lr=1e-2))
    data = _data()
    train = DataLoader(data, batch_size=4, sampler=DistributedSampler(data, num_replicas=1, rank=0))
    cfg = TrainConfig(epochs=epochs, batch_size=4, amp="off", early_stopping=EarlyStoppingConfig())
    return Trainer(
        model=model,
        optimizer=opt,
        schedule=Schedule(opt, SchedulerConfig(name="cosine"), len(train), epochs),
        loss_fn=create_loss("dice_bce"),
        accumulator=MetricAccumulator(num_classes=1, mode="binary"),
        train_loader=train,
        val_loader=DataLoader(_data(seed=1), batch_size=4),
        cfg=cfg,
        device=device,
        generator=torch.Generator(device=device).manual_seed(5),
    )


def test_resume_on_cuda(cuda: torch.device, tmp_path) -> None:
    """What every restarted GPU worker does: load with map_location=cuda, then restore
    (RNG states must come back as CPU ByteTensors)."""
    first = _trainer(cuda, epochs=1)
    result = fit(first)
    path = save_checkpoint(capture_state(first, 0, result, 0), tmp_path / "ckpt.pt")
    state = load_checkpoint(path, map_location=cuda)
    assert next(iter(state["model"].values())).is_cuda
    resumed = _trainer(cuda, epochs=2)
    history = fit(resumed, resume=state).history
    assert [h.epoch for h in history] == [0, 1]
    assert next(resumed.model.parameters()).is_cuda
