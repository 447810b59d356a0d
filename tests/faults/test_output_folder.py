"""A full or read-only output folder: one clear error, and the checkpoint written before
it stays intact (writes are atomic), so a rerun resumes from it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from tests.faults.common import (
    DICE_TOLERANCE,
    EPOCHS,
    Background,
    epochs_of,
    final_dice,
    fit_config,
    intervals_lost,
    wait_for,
)
from tests.faults.disk import Disk, small_disk
from unet_core.engine import CheckpointWriteError, load_checkpoint, save_checkpoint
from unetflow.user_errors import USER_ERRORS


def _break(disk: Disk, fault: str) -> None:
    disk.fill() if fault == "full" else disk.read_only()


def _mend(disk: Disk, fault: str) -> None:
    disk.free() if fault == "full" else disk.writable()


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_checkpoint_write_fails_with_one_line_and_keeps_the_previous(fault: str) -> None:
    with small_disk("1m") as disk:
        path = disk.root / "run" / "checkpoint.pt"
        save_checkpoint({"epoch": 0, "weights": torch.arange(1000.0)}, path)
        _break(disk, fault)
        with pytest.raises(CheckpointWriteError) as caught:
            save_checkpoint({"epoch": 1, "weights": torch.zeros(200_000)}, path)
        message = str(caught.value)
        assert "\n" not in message and str(path) in message
        reason = "No space left" if fault == "full" else "Read-only"
        assert reason in message and "free space or make the folder writable" in message
        previous = load_checkpoint(path)
        assert previous["epoch"] == 0 and torch.equal(previous["weights"], torch.arange(1000.0))
        assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]  # no temp file
        _mend(disk, fault)
    assert CheckpointWriteError in USER_ERRORS  # the CLI prints it as one line, exit 2


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_ray_storage_writes_are_whole_or_absent(fault: str) -> None:
    from unetflow.atomic_fs import atomic_local_filesystem

    fs = atomic_local_filesystem()  # what Ray Train writes local storage through
    with small_disk("1m") as disk:
        path = str(disk.root / "run" / "checkpoint_manager_snapshot.json")
        with fs.open_output_stream(path) as out:
            out.write(b'{"epoch": 0}')
        _break(disk, fault)
        with pytest.raises(OSError), fs.open_output_stream(path) as out:
            out.write(b"x" * 2_000_000)
        assert Path(path).read_bytes() == b'{"epoch": 0}'  # Ray could still resume
        assert [p.name for p in Path(path).parent.iterdir()] == [Path(path).name]
        _mend(disk, fault)


def _checkpoints(run_dir: Path) -> dict[int, Path]:
    """The checkpoints Ray finished writing, by epoch (a partial one does not load)."""
    found = {}
    for path in sorted(run_dir.glob("checkpoint_*/checkpoint.pt")):
        try:
            found[int(load_checkpoint(path)["epoch"])] = path
        except Exception:  # a partial file: never used for resume, as the rerun shows
            continue
    return found


@pytest.mark.slow
@pytest.mark.integration
def test_full_output_folder_mid_run_then_rerun_resumes(
    prepared_dir: Path, ray_local, baseline_dice: float, fault_record
) -> None:
    from unetflow.ray_train import fit_with_ray

    fault_record.fault = "output folder full mid-run (tmpfs), rerun after freeing space"
    fault_record.baseline_dice = baseline_dice
    cfg = fit_config(max_failures=0)
    with small_disk("16m") as disk:
        storage, run_dir = str(disk.root), disk.root / "full"
        run = Background(lambda: fit_with_ray(cfg, prepared_dir, "full", storage))
        wait_for(lambda: _checkpoints(run_dir), "the first checkpoint")
        disk.fill()
        broken_at = time.monotonic()
        at_fault = max(_checkpoints(run_dir))
        with pytest.raises(USER_ERRORS) as caught:
            run.join()
        assert "\n" not in str(caught.value) and storage in str(caught.value)
        intact = _checkpoints(run_dir)
        assert intact, "the checkpoints written before the disk filled were lost"
        resumed_from = max(intact)
        disk.free()
        outcome = fit_with_ray(cfg, prepared_dir, "full", storage)
    fault_record.recover_s = round(time.monotonic() - broken_at, 1)
    assert epochs_of(outcome) == list(range(EPOCHS))
    # Epochs trained after the last checkpoint that survived are the work repeated.
    assert resumed_from >= at_fault  # no checkpoint written before the fault was lost
    fault_record.intervals_lost = intervals_lost(at_fault, resumed_from)
    fault_record.dice = final_dice(outcome)
    assert abs(fault_record.dice - baseline_dice) <= DICE_TOLERANCE
    assert fault_record.intervals_lost <= 1
    fault_record.mark_survived()
