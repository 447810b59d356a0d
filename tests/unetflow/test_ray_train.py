"""Ray Train (2 CPU workers on the local Ray): global validation metrics and resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from unet_core.engine import load_checkpoint
from unetflow.config import parse_config
from unetflow.ray_train import fit_with_ray
from unetflow.training import evaluate_split

pytestmark = pytest.mark.slow


def _cfg(epochs: int):
    return parse_config(
        {
            "name": "resume",
            "model": {"preset": "unet", "base_channels": 8, "depth": 2},
            "train": {"epochs": epochs, "batch_size": 4},
            "scaling": {"num_workers": 2},
            "checkpoint": {"num_to_keep": 5, "max_failures": 0},
        }
    )


def _checkpoints(run_dir: Path) -> dict[int, dict]:
    states = [load_checkpoint(p) for p in run_dir.glob("checkpoint_*/checkpoint.pt")]
    return {s["epoch"]: s for s in states}


def test_two_worker_metrics_match_single_process_and_rerun_resumes(
    prepared_dir: Path, ray_local, tmp_path: Path
) -> None:
    storage = str(tmp_path / "ray")
    first = fit_with_ray(_cfg(2), prepared_dir, "resume", storage)
    assert [int(h["epoch"]) for h in first.history] == [0, 1]

    # Validation ran sharded over 2 workers; the same weights evaluated in this single
    # process over the whole val split must give the same global Dice and IoU.
    with first.best_checkpoint.as_directory() as ckpt:
        state = load_checkpoint(Path(ckpt))
    single = evaluate_split(_cfg(2), state["model"], prepared_dir, "val")
    assert single["val_dice"] == pytest.approx(first.best_metrics["val_dice"], abs=1e-6)
    assert single["val_iou"] == pytest.approx(first.best_metrics["val_iou"], abs=1e-6)

    # The same run name with epochs=3 resumes: only epoch 3 (index 2) trains. Retraining
    # from scratch would have added 3 checkpoints (num_to_keep=5 keeps them all).
    run_dir = tmp_path / "ray" / "resume"
    before = {p.name for p in run_dir.glob("checkpoint_*") if p.is_dir()}
    second = fit_with_ray(_cfg(3), prepared_dir, "resume", storage)
    assert [int(h["epoch"]) for h in second.history] == [0, 1, 2]  # one history
    after = {p.name for p in run_dir.glob("checkpoint_*") if p.is_dir()}
    assert len(before) == 2 and before < after and len(after) == 3
    states = _checkpoints(run_dir)
    assert sorted(states) == [0, 1, 2]
    history = states[2]["history"]
    assert [row["epoch"] for row in history] == [0, 1, 2]
    for row, earlier in zip(history[:2], first.history, strict=True):
        assert row["val_dice"] == pytest.approx(earlier["val_dice"])  # history continues
    assert "inference" in states[2] and "config" in states[2]  # self-describing
