"""A worker killed mid-run: Ray Train restarts the group from the latest checkpoint."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from unet_core.engine import load_checkpoint
from unetflow.config import parse_config
from unetflow.ray_train import fit_with_ray

pytestmark = pytest.mark.slow

EPOCHS = 25


def _workers(state: str = "ALIVE") -> dict[str, int]:
    from ray.util.state import list_actors

    actors = list_actors(
        filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", state)], detail=True
    )
    return {a.actor_id: a.pid for a in actors}


def test_killed_worker_group_resumes_from_latest_checkpoint(
    prepared_dir: Path, ray_local, tmp_path: Path
) -> None:
    cfg = parse_config(
        {
            "name": "faults",
            "model": {"preset": "unet", "base_channels": 4, "depth": 2},
            "train": {"epochs": EPOCHS, "batch_size": 8, "early_stopping": {"enabled": False}},
            "scaling": {"num_workers": 2},
            "checkpoint": {"num_to_keep": 2, "max_failures": 1},
        }
    )
    outcome: dict = {}
    run = threading.Thread(
        target=lambda: outcome.update(
            result=fit_with_ray(cfg, prepared_dir, "faults", str(tmp_path / "ray"))
        )
    )
    run.start()
    run_dir = tmp_path / "ray" / "faults"
    deadline = time.monotonic() + 300
    while not list(run_dir.glob("checkpoint_*/checkpoint.pt")) and time.monotonic() < deadline:
        time.sleep(0.5)
    first_group = _workers()
    assert first_group, "no training worker alive after the first checkpoint"
    os.kill(next(iter(first_group.values())), signal.SIGKILL)
    run.join(timeout=600)

    assert "result" in outcome, "the run did not survive one killed worker"
    history = outcome["result"].history
    assert int(history[-1]["epoch"]) == EPOCHS - 1
    restarted = set(_workers("DEAD")) - set(first_group)
    assert restarted, "no second worker group was started"
    latest = max(
        (load_checkpoint(p) for p in run_dir.glob("checkpoint_*/checkpoint.pt")),
        key=lambda s: s["epoch"],
    )
    # One continuous history: the restarted group continued from a checkpoint.
    assert [row["epoch"] for row in latest["history"]] == list(range(EPOCHS))
