"""What a person sees from `unetflow train`: one progress display from the driver, no
Ray Train per-report or per-checkpoint lines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_train_prints_one_progress_display_and_no_ray_report_lines(project_dir: Path) -> None:
    # val_every 2: epoch 1 neither validates nor checkpoints, so it reports nothing to Ray.
    sets = ["train.epochs=3", "train.val_every=2", "scaling.num_workers=1"]
    sets += ["model.base_channels=4", "model.depth=2"]
    proc = subprocess.run(
        [sys.executable, "-m", "unetflow_cli", "train", "--project-dir", str(project_dir)]
        + [arg for kv in sets for arg in ("--set", kv)],
        cwd=project_dir,
        env={
            **{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},  # its own Ray
            "PYTHONPATH": str(REPO),
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",  # a loaded CI machine
        },
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    for noise in ("Reporting training result", "Checkpoint successfully created", "Moving model"):
        assert noise not in output, noise
    # Not a terminal: plain lines from the driver (never a worker), the last epoch's once.
    progress = [line for line in output.splitlines() if re.match(r"step \d+/\d+ epoch", line)]
    assert progress, output[-4000:]
    assert not re.search(r"\(RayTrainWorker[^)]*\) (step|epoch) \d", output)
    finals = [line for line in progress if " epoch 3/3 " in line]
    assert len(finals) == 1 and "val_dice=" in finals[0] and "eta" in finals[0], progress
    assert len(progress) <= 3  # a line per epoch at most, here never two within 30 s
