"""Checkpoints that resume a run exactly and load with `weights_only=True`.

A checkpoint is a plain dict of tensors and primitives (no pickled classes), so loading
one never executes code from the file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from unet_core.engine.results import EpochResult, FitResult

if TYPE_CHECKING:
    from unet_core.engine.loop import Trainer

FORMAT_VERSION = 1
CHECKPOINT_FILE = "checkpoint.pt"


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model under DDP / torch.compile wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            return model
        model = inner


def capture_state(trainer: Trainer, epoch: int, result: FitResult, stale_epochs: int) -> dict:
    """Everything needed to continue after `epoch` as if never interrupted."""
    state = {
        "format_version": FORMAT_VERSION,
        "epoch": epoch,
        "model": unwrap(trainer.model).state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "schedule": trainer.schedule.state_dict(),
        "best_metric": result.best_metric,
        "best_epoch": result.best_epoch,
        "stale_epochs": stale_epochs,
        "history": [{"epoch": h.epoch, **h.metrics} for h in result.history],
        "torch_rng": torch.get_rng_state(),
    }
    if trainer.scaler is not None:
        state["scaler"] = trainer.scaler.state_dict()
    if trainer.generator is not None:
        state["augment_rng"] = trainer.generator.get_state()
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def restore_state(trainer: Trainer, state: dict, result: FitResult) -> tuple[int, int]:
    """Load `state` into `trainer` and `result`; returns (next epoch, stale epochs)."""
    unwrap(trainer.model).load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.schedule.load_state_dict(state["schedule"])
    if trainer.scaler is not None and "scaler" in state:
        trainer.scaler.load_state_dict(state["scaler"])
    if trainer.generator is not None and "augment_rng" in state:
        trainer.generator.set_state(state["augment_rng"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    result.best_metric, result.best_epoch = state["best_metric"], state["best_epoch"]
    for row in state["history"]:
        metrics = {k: v for k, v in row.items() if k != "epoch"}
        result.history.append(EpochResult(row["epoch"], metrics, False, 0.0))
    return int(state["epoch"]) + 1, int(state["stale_epochs"])


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Write atomically: a crash mid-write never leaves a truncated checkpoint behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pt")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with `weights_only=True` (refuses pickled code)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist; pass a checkpoint file or folder"
        )
    return torch.load(path, map_location=map_location, weights_only=True)
