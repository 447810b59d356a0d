"""`build_trainer` options that matter on GPUs, checked on CPU: channels_last in 2D and
3D, pinned loaders with worker processes, opt-in compile, exact schedule length."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unet_core.engine import Hooks, fit
from unetflow.builders import build_trainer, loader_workers, make_loaders
from unetflow.config import parse_config
from unetflow.data_params import DataParams
from unetflow.prepare import prepare

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def prepared_3d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prepared3d") / "prepared"
    params = {
        "source": "synthetic",
        "folder": None,
        "spatial_dims": 3,
        "synthetic": {"num_images": 6, "shape": [8, 16, 16], "seed": 3},
        "split": {"fractions": [0.5, 0.25, 0.25], "seed": 3},
    }
    prepare(DataParams.model_validate(params), out)
    return out


def _cfg(**train) -> object:
    return parse_config(
        {
            "model": {"preset": "unet", "base_channels": 4, "depth": 2},
            "train": {"epochs": 1, "batch_size": 4, **train},
        }
    )


@pytest.mark.parametrize("dims", [2, 3])
def test_channels_last_trains_2d_and_3d_models(
    dims: int, prepared_dir: Path, prepared_3d: Path
) -> None:
    """3D models need NDHWC (`channels_last_3d`); the 2D layout made unet3d raise
    `required rank 4 tensor`."""
    model = {"preset": "unet3d", "base_channels": 4, "depth": 2} if dims == 3 else None
    cfg = parse_config(
        {
            "model": model or {"preset": "unet", "base_channels": 4, "depth": 2},
            "train": {"epochs": 1, "batch_size": 2, "channels_last": True},
        }
    )
    trainer = build_trainer(cfg, prepared_3d if dims == 3 else prepared_dir, CPU)
    layout = torch.channels_last_3d if dims == 3 else torch.channels_last
    weight = next(p for p in trainer.model.parameters() if p.ndim == dims + 2)
    assert weight.is_contiguous(memory_format=layout)
    result = fit(trainer)
    assert result.history[0].metrics["train_loss"] > 0


def test_cuda_loaders_pin_memory_and_use_worker_processes(prepared_dir: Path) -> None:
    cuda = torch.device("cuda")  # only the loaders' settings are built: no GPU needed
    train, val = make_loaders(_cfg(), prepared_dir, 0, 1, device=cuda)
    assert train.pin_memory and val.pin_memory
    assert train.num_workers == loader_workers(None, cuda)
    cpu_train, _ = make_loaders(_cfg(), prepared_dir, 0, 1, device=CPU)
    assert not cpu_train.pin_memory and cpu_train.num_workers == 0
    explicit, _ = make_loaders(_cfg(loader_workers=1), prepared_dir, 0, 1, device=CPU)
    assert explicit.num_workers == 1 and explicit.persistent_workers
    # The prepared data set reads the same in a worker process as in this one.
    in_process, _ = make_loaders(_cfg(loader_workers=0), prepared_dir, 0, 1, device=CPU)
    for (a, am), (b, bm) in zip(explicit, in_process, strict=True):
        assert torch.equal(a, b) and torch.equal(am, bm)


def test_default_loader_workers_follow_the_device_and_the_cpus() -> None:
    import os

    cpus = len(os.sched_getaffinity(0))
    assert loader_workers(None, torch.device("cuda")) == max(0, min(4, cpus - 1))
    assert loader_workers(None, CPU) == 0
    assert loader_workers(2, CPU) == 2


def test_schedule_length_is_the_loop_step_count(prepared_dir: Path) -> None:
    """24 training images, batch 4: 6 batches; accumulate 4: 2 optimizer steps per epoch
    (4 + the 2 leftovers), so the schedule ends exactly with the last step."""
    cfg = _cfg(accumulate_steps=4, epochs=2)
    trainer = build_trainer(cfg, prepared_dir, CPU)
    assert len(trainer.train_loader) == 6
    fit(trainer)
    assert trainer.schedule.step_count == trainer.schedule.total_steps == 4


def test_whole_images_with_steps_per_epoch_take_that_many_batches(prepared_dir: Path) -> None:
    """The plan's epoch floor on whole images: 24 training images, batch 4, 9 steps per
    epoch are one shuffled pass and half of another; the schedule spans them all."""
    cfg = _cfg(steps_per_epoch=9, epochs=2)
    assert cfg.data.patch_size is None
    trainer = build_trainer(cfg, prepared_dir, CPU)
    assert len(trainer.train_loader) == 9
    order = list(trainer.train_loader.sampler)
    assert sorted(order[:24]) == list(range(24)) and len(set(order[24:])) == 12
    fit(trainer)
    assert trainer.schedule.step_count == trainer.schedule.total_steps == 18


def test_compile_is_opt_in_and_checkpoints_keep_plain_keys(prepared_dir: Path) -> None:
    from unet_core.engine import unwrap

    plain = build_trainer(_cfg(), prepared_dir, CPU)
    assert not hasattr(plain.model, "_orig_mod")
    compiled = build_trainer(_cfg(compile=True), prepared_dir, CPU)
    assert hasattr(compiled.model, "_orig_mod")  # torch.compile's wrapper
    assert list(unwrap(compiled.model).state_dict()) == list(plain.model.state_dict())


def test_patch_schedule_runs_over_all_steps_and_ends_at_min_lr(prepared_dir: Path) -> None:
    """Patch training with steps_per_epoch: the schedule spans epochs x steps (warm-up
    included) and the last optimizer step leaves exactly min_lr_ratio * lr."""
    cfg = parse_config(
        {
            "model": {"preset": "unet", "base_channels": 4, "depth": 2},
            "data": {"patch_size": [16, 16]},
            "train": {"epochs": 3, "batch_size": 2, "steps_per_epoch": 3, "val_every": 3},
            "optim": {"lr": 0.01},
            "scheduler": {"name": "cosine", "warmup_epochs": 0.5, "min_lr_ratio": 0.1},
        }
    )
    trainer = build_trainer(cfg, prepared_dir, CPU)
    lrs = []
    trainer.hooks = Hooks(
        on_step=lambda step, loss: lrs.append(trainer.optimizer.param_groups[0]["lr"])
    )
    trainer.cfg = trainer.cfg.model_copy(update={"log_every_steps": 1})
    fit(trainer)
    assert trainer.schedule.total_steps == trainer.schedule.step_count == 9
    assert len(lrs) == 9 and min(lrs[:-1]) > 0.001
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.001, rel=1e-12)
