"""A single-worker trial's work, free of Ray: cost metrics, then train, checkpoint, report.

`tune.trainable` wraps these for Tune; the Tune overhead benchmark runs the same
functions in a plain process pool to time the work without Tune. Importing this module
costs no Ray or MLflow start-up.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from unet_core.data import read_manifest
from unet_core.engine import CHECKPOINT_FILE, EpochResult, Hooks, fit, save_checkpoint
from unet_core.models import create_model, describe
from unetflow.builders import build_trainer
from unetflow.config import ExperimentConfig

COST_KEYS = ("params", "flops", "latency_ms")
# (metrics of one epoch, folder holding that epoch's checkpoint) -> None
EpochReport = Callable[[dict[str, float], Path], None]


def model_cost(cfg: ExperimentConfig, data_dir: Path, latency: bool = False) -> dict[str, float]:
    """Parameters, forward FLOPs per image and (optionally) CPU latency per image in ms."""
    manifest = read_manifest(data_dir)
    model = create_model(cfg.model)
    shape = (1, cfg.model.in_channels, *manifest.spatial_shape)
    info = describe(model, shape)
    out = {"params": float(info.parameters), "flops": float(info.flops_per_sample)}
    if latency:
        out["latency_ms"] = _latency_ms(model, shape)
    return out


def _latency_ms(model: torch.nn.Module, shape: tuple[int, ...], repeats: int = 5) -> float:
    model.eval()
    x = torch.zeros(shape)
    with torch.no_grad():
        model(x)  # warm-up: first call allocates
        started = time.perf_counter()
        for _ in range(repeats):
            model(x)
    return 1000 * (time.perf_counter() - started) / repeats


def trial_device(cfg: ExperimentConfig) -> torch.device:
    """CUDA when the config asks for a GPU and one is visible, else CPU."""
    use_gpu = cfg.scaling.use_gpu and torch.cuda.is_available()
    return torch.device("cuda" if use_gpu else "cpu")


def train_in_process(
    cfg: ExperimentConfig,
    data_dir: Path,
    costs: dict[str, float],
    report: EpochReport,
    resume: dict | None = None,
) -> None:
    """Train in this process; after each validation write a checkpoint and call `report`.

    Args:
        costs: the model's cost metrics (`model_cost`), added to every epoch's report.
        report: called after each validated epoch with the metrics and a temporary folder holding
            that epoch's checkpoint (`CHECKPOINT_FILE`); the folder is removed after.
        resume: a checkpoint state to continue from (`load_checkpoint`).
    """
    trainer = build_trainer(cfg, data_dir, trial_device(cfg))

    def on_epoch_end(result: EpochResult, state: dict) -> None:
        if not result.validated:
            return  # Tune's schedulers judge validations; the next one carries a checkpoint
        _report(cfg, state, {**result.metrics, **costs, "epoch": result.epoch}, report)

    trainer.hooks = Hooks(on_epoch_end=on_epoch_end)
    fit(trainer, resume)


def report_again(
    cfg: ExperimentConfig, state: dict, costs: dict[str, float], report: EpochReport
) -> None:
    """Report the epoch `state` was checkpointed after once more, as `train_in_process` did.

    The metrics come from the checkpoint's history, keyed in the same order (Tune's CSV
    log of a resumed trial keeps the header of its first session).
    """
    metrics = {k: v for k, v in state["history"][-1].items() if k != "epoch"}
    _report(cfg, state, {**metrics, **costs, "epoch": int(state["epoch"])}, report)


def _report(cfg: ExperimentConfig, state: dict, metrics: dict, report: EpochReport) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint({**state, "config": cfg.model_dump_json()}, Path(tmp) / CHECKPOINT_FILE)
        report(metrics, Path(tmp))
