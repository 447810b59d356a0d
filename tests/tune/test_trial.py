"""The Ray-free trial work (`tune.trial`): what a single-worker trial reports and saves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from tune.trial import COST_KEYS, model_cost, report_again, train_in_process
from unet_core.engine import CHECKPOINT_FILE, load_checkpoint
from unet_core.models import create_model
from unetflow.config import ExperimentConfig, load_config

TINY = {
    "model.base_channels": 8,
    "model.depth": 2,
    "train.batch_size": 8,
    "train.epochs": 2,
    "train.early_stopping.enabled": False,
}


def test_train_in_process_reports_every_epoch_with_a_loadable_checkpoint(
    prepared_dir: Path,
) -> None:
    cfg = load_config(None, TINY)
    costs = {"params": 1.0, "flops": 2.0}
    reports: list[tuple[dict, dict]] = []

    def report(metrics: dict[str, float], checkpoint_dir: Path) -> None:
        state = load_checkpoint(checkpoint_dir / CHECKPOINT_FILE)  # weights_only=True
        reports.append((metrics, state))

    train_in_process(cfg, prepared_dir, costs, report)

    assert [int(m["epoch"]) for m, _ in reports] == [0, 1]
    for metrics, state in reports:
        assert metrics["params"] == 1.0 and metrics["flops"] == 2.0
        assert 0.0 <= metrics["val_dice"] <= 1.0
        assert ExperimentConfig.model_validate_json(state["config"]) == cfg
    first, last = reports[0][1]["model"], reports[1][1]["model"]
    assert any(not torch.equal(first[k], last[k]) for k in first), "the second epoch trained"


def test_train_in_process_resumes_after_the_checkpointed_epoch(prepared_dir: Path) -> None:
    cfg = load_config(None, TINY)
    states: list[dict] = []
    train_in_process(
        cfg, prepared_dir, {}, lambda m, d: states.append(load_checkpoint(d / CHECKPOINT_FILE))
    )
    epochs: list[int] = []
    train_in_process(cfg, prepared_dir, {}, lambda m, d: epochs.append(int(m["epoch"])), states[0])
    assert epochs == [1]  # only the epoch after the checkpoint runs


def test_report_again_repeats_the_checkpointed_epochs_report(prepared_dir: Path) -> None:
    # A trial resumed past Tune's record reports that epoch again: the same metrics in the
    # same key order (Tune's CSV log keeps its first header) and the same checkpoint.
    cfg = load_config(None, TINY)
    costs = {"params": 1.0, "flops": 2.0}
    reports: list[tuple[dict, dict]] = []

    def report(metrics: dict[str, float], checkpoint_dir: Path) -> None:
        reports.append((metrics, load_checkpoint(checkpoint_dir / CHECKPOINT_FILE)))

    train_in_process(cfg, prepared_dir, costs, report)
    (metrics, state), again = reports[-1], []
    report_again(
        cfg, state, costs, lambda m, d: again.append((m, load_checkpoint(d / CHECKPOINT_FILE)))
    )
    ((metrics_again, state_again),) = again
    assert list(metrics_again.items()) == list(metrics.items())
    assert state_again["epoch"] == state["epoch"] == 1
    assert all(torch.equal(state_again["model"][k], v) for k, v in state["model"].items())


def test_model_cost_counts_the_models_parameters(prepared_dir: Path) -> None:
    cfg = load_config(None, TINY)
    costs = model_cost(cfg, prepared_dir, latency=True)
    assert set(costs) == set(COST_KEYS)
    assert costs["params"] == sum(p.numel() for p in create_model(cfg.model).parameters())
    assert costs["flops"] > costs["params"] and costs["latency_ms"] > 0


def test_trial_modules_start_without_mlflow_and_trial_work_without_ray() -> None:
    # Every Tune trial process imports tune.trainable: MLflow is loaded only when tracking.
    code = (
        "import sys, tune.trial; assert 'ray' not in sys.modules, 'ray'; "
        "assert 'mlflow' not in sys.modules, 'mlflow'; "
        "import tune.trainable; assert 'mlflow' not in sys.modules, 'mlflow via trainable'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
