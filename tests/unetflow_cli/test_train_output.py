"""What a person sees from `unetflow train`: one progress display from the driver, no
Ray Train per-report or per-checkpoint lines."""

from __future__ import annotations

import re

import pytest

from tests.support.cli_training import CliTraining


@pytest.mark.slow
def test_train_prints_one_progress_display_and_no_ray_report_lines(
    cli_training: CliTraining,
) -> None:
    output = cli_training.output
    assert cli_training.proc.returncode == 0, output[-4000:]
    for noise in ("Reporting training result", "Checkpoint successfully created", "Moving model"):
        assert noise not in output, noise
    # Not a terminal: plain lines from the driver (never a worker), the last epoch's once.
    progress = [line for line in output.splitlines() if re.match(r"step \d+/\d+ epoch", line)]
    assert progress, output[-4000:]
    assert not re.search(r"\(RayTrainWorker[^)]*\) (step|epoch) \d", output)
    finals = [line for line in progress if " epoch 3/3 " in line]
    assert len(finals) == 1 and "val_dice=" in finals[0] and "eta" in finals[0], progress
    assert len(progress) <= 3  # a line per epoch at most, here never two within 30 s
