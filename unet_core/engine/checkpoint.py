"""Checkpoints that resume a run exactly and load with `weights_only=True`.

A checkpoint is a plain dict of tensors and primitives (no pickled classes), so loading
one never executes code from the file.

"model" holds the served weights: the weight average when `TrainConfig.ema_decay` is set
(what validation scored), else the trained weights. With an average, "trained_model" and
"ema_updates" hold what resuming needs besides; a checkpoint without them (older, or
written without an average) resumes with the average restarted at its "model".
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
        "model": unwrap(trainer.served_model()).state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "schedule": trainer.schedule.state_dict(),
        "best_metric": result.best_metric,
        "best_epoch": result.best_epoch,
        "stale_epochs": stale_epochs,
        "history": [{"epoch": h.epoch, **h.metrics} for h in result.history],
        "torch_rng": torch.get_rng_state(),
    }
    if trainer.ema is not None:
        state["trained_model"] = unwrap(trainer.model).state_dict()
        state["ema_updates"] = trainer.ema.updates
    if trainer.scaler is not None:
        state["scaler"] = trainer.scaler.state_dict()
    if trainer.generator is not None:
        state["augment_rng"] = trainer.generator.get_state()
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def restore_state(trainer: Trainer, state: dict, result: FitResult) -> tuple[int, int]:
    """Load `state` into `trainer` and `result`; returns (next epoch, stale epochs)."""
    _restore_weights(trainer, state)
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.schedule.load_state_dict(state["schedule"])
    if trainer.scaler is not None and "scaler" in state:
        trainer.scaler.load_state_dict(state["scaler"])
    if trainer.generator is not None and "augment_rng" in state:
        trainer.generator.set_state(_rng_bytes(state["augment_rng"]))
    torch.set_rng_state(_rng_bytes(state["torch_rng"]))
    if "cuda_rng" in state and torch.cuda.is_available():
        # A restarted worker may see fewer GPUs than the one that saved (Ray sets
        # CUDA_VISIBLE_DEVICES per worker): restore the devices both have.
        for index, rng in enumerate(state["cuda_rng"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(_rng_bytes(rng), index)
    result.best_metric, result.best_epoch = state["best_metric"], state["best_epoch"]
    for row in state["history"]:
        metrics = {k: v for k, v in row.items() if k != "epoch"}
        validated = any(key.startswith("val_") for key in metrics)
        result.history.append(EpochResult(row["epoch"], metrics, False, 0.0, validated))
    return int(state["epoch"]) + 1, int(state["stale_epochs"])


def _restore_weights(trainer: Trainer, state: dict) -> None:
    """The trained weights and, with an average, the average and its update count."""
    unwrap(trainer.model).load_state_dict(state.get("trained_model", state["model"]))
    if trainer.ema is None:
        return
    if "trained_model" in state:
        trainer.ema.module.load_state_dict(state["model"])
        trainer.ema.updates = int(state["ema_updates"])
    else:  # written without an average: start one at the checkpoint's weights
        trainer.ema.reset()


def _rng_bytes(rng: torch.Tensor) -> torch.Tensor:
    """An RNG state as the CPU ByteTensor torch requires (`torch.set_rng_state`).

    A checkpoint loaded with `torch.load(map_location="cuda")` carries its RNG states
    on the GPU, and restoring those raises `TypeError: RNG state must be a
    torch.ByteTensor`; `load_checkpoint` never does that, other loaders might.
    """
    return rng.detach().to(device="cpu", dtype=torch.uint8)


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (full or read-only folder); the message names the
    file and what to do, and the checkpoint that was there before is intact."""


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Write atomically and durably: a crash, a full disk or a read-only folder mid-write
    never leaves a truncated checkpoint behind, and the previous one stays as it was.

    The bytes go to a temporary file in the same folder, are flushed to disk (fsync), and
    only then renamed over `path`; the folder is synced too, so the rename itself
    survives a power loss (without it a crash can leave an empty file under the name).

    Raises:
        CheckpointWriteError: the folder is full, read-only or not writable.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pt")
    except OSError as err:
        raise CheckpointWriteError(_write_failed(path, err)) from err
    try:
        with os.fdopen(fd, "wb") as out:
            torch.save(state, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except (OSError, RuntimeError) as err:  # torch.save reports a full disk as RuntimeError
        raise CheckpointWriteError(_write_failed(path, err)) from err
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _write_failed(path: Path, err: Exception) -> str:
    if isinstance(err, OSError) and err.strerror:
        reason = err.strerror  # "Read-only file system", "No space left on device", ...
    else:
        reason = "the write failed (is the disk full?)"
    return (
        f"cannot write checkpoint {path}: {reason}; free space or make the folder writable "
        "(the previous checkpoint there is intact)"
    )


def _fsync_folder(folder: Path) -> None:
    """Persist a rename in `folder` (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a folder; the file itself is synced
    finally:
        os.close(fd)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with `weights_only=True` (refuses pickled code).

    Everything loads to the CPU, then the model weights move to `map_location`. The RNG
    states stay CPU ByteTensors, the only form `torch.set_rng_state` takes (mapping them
    to the GPU made every resumed GPU run fail), and the optimizer state stays where
    `Optimizer.load_state_dict` wants it (it moves moments to the parameters' device and
    keeps `step` counters on the CPU, as non-capturable optimizers require).
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist; pass a checkpoint file or folder"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    device = torch.device(map_location)
    for key in ("model", "trained_model"):
        if device.type != "cpu" and isinstance(state.get(key), dict):
            state[key] = {k: v.to(device) for k, v in state[key].items()}
    return state
