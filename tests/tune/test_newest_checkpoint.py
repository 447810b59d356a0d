"""A resumed trial starts from its newest whole checkpoint, not only from Tune's record,
which can lag by one report (`tune.trainable.newest_state`).

The folders are laid out as Ray writes them (`<trial>/checkpoint_<index>/checkpoint.pt`)
and read through the same filesystem the search uses for a local storage path.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import ray.tune

from tune.trainable import newest_state
from unet_core.engine import CHECKPOINT_FILE, save_checkpoint
from unetflow.atomic_fs import atomic_local_filesystem

FS = atomic_local_filesystem()


def _write(trial: Path, index: int, epoch: int) -> ray.tune.Checkpoint:
    folder = trial / f"checkpoint_{index:06d}"
    save_checkpoint({"epoch": epoch}, folder / CHECKPOINT_FILE)
    return ray.tune.Checkpoint(folder.as_posix(), FS)


def _epoch(recorded: ray.tune.Checkpoint | None, trial: Path) -> int | None:
    resume = newest_state(recorded, FS, trial.as_posix())
    return None if resume is None else int(resume.state["epoch"])


def test_a_newer_whole_checkpoint_wins_over_the_record(tmp_path: Path) -> None:
    recorded = _write(tmp_path, 1, epoch=1)
    _write(tmp_path, 0, epoch=0)
    _write(tmp_path, 2, epoch=2)
    resume = newest_state(recorded, FS, tmp_path.as_posix())
    assert resume is not None and resume.state["epoch"] == 2
    assert resume.unreported  # Tune never took its report: the trial sends it again


def test_the_record_is_taken_when_nothing_newer_was_written(tmp_path: Path) -> None:
    _write(tmp_path, 0, epoch=0)
    recorded = _write(tmp_path, 1, epoch=1)
    resume = newest_state(recorded, FS, tmp_path.as_posix())
    assert resume is not None and resume.state["epoch"] == 1 and not resume.unreported


def test_without_a_record_the_newest_whole_checkpoint_is_taken(tmp_path: Path) -> None:
    _write(tmp_path, 0, epoch=0)
    _write(tmp_path, 1, epoch=1)
    assert _epoch(None, tmp_path) == 1


def test_a_trial_renamed_on_restore_finds_the_checkpoints_of_its_old_folder(
    tmp_path: Path,
) -> None:
    # Not yet recorded when the driver died, the trial restarts in `trial_<id>_<4 hex>`
    # (Ray found the killed driver's staging copy of `trial_<id>`) with nothing there yet.
    old, renamed = tmp_path / "trial_a1", tmp_path / "trial_a1_9f3c"
    _write(old, 0, epoch=0)
    _write(old, 1, epoch=1)
    renamed.mkdir()
    resume = newest_state(None, FS, renamed.as_posix(), old.as_posix())
    assert resume is not None and resume.state["epoch"] == 1 and resume.unreported
    # Once the renamed folder holds a later epoch, that one wins.
    _write(renamed, 0, epoch=2)
    assert newest_state(None, FS, renamed.as_posix(), old.as_posix()).state["epoch"] == 2


def test_a_renamed_trials_history_starts_with_the_epochs_of_its_old_folder(
    tmp_path: Path,
) -> None:
    # What the search's summary reads (`tune.runner.trial_history`): the renamed folder's
    # reports start at the epoch the trial resumed from; the earlier ones are in the old.
    import json

    import pandas as pd
    from ray.tune import Result

    from tune.runner import trial_history

    old, renamed = tmp_path / "trial_a1", tmp_path / "trial_a1_9f3c"
    old.mkdir()
    rows = [{"trial_id": "a1", "epoch": e, "val_dice": 0.1 * e} for e in range(3)]
    (old / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    new = [{"trial_id": "a1", "epoch": e, "val_dice": 0.1 * e} for e in (2, 3)]
    result = Result(
        metrics=new[-1],
        checkpoint=None,
        error=None,
        path=renamed.as_posix(),
        metrics_dataframe=pd.DataFrame(new),
        _storage_filesystem=FS,
    )
    assert [int(r["epoch"]) for r in trial_history(result)] == [0, 1, 2, 3]
    # A trial in its own folder: its history as Tune has it.
    result.path = old.as_posix()
    assert [int(r["epoch"]) for r in trial_history(result)] == [2, 3]


@pytest.mark.parametrize(
    "partial",
    [
        b"",  # created, nothing written yet
        b"PK\x03\x04 truncated",  # cut off mid-write
        None,  # the folder exists, its file does not
    ],
)
def test_a_partial_newer_checkpoint_is_skipped(tmp_path: Path, partial: bytes | None) -> None:
    recorded = _write(tmp_path, 1, epoch=1)
    folder = tmp_path / "checkpoint_000002"
    folder.mkdir()
    (folder / ".tmp-upload").write_bytes(b"half")  # what an interrupted atomic write leaves
    if partial is not None:
        (folder / CHECKPOINT_FILE).write_bytes(partial)
    assert _epoch(recorded, tmp_path) == 1
    assert _epoch(None, tmp_path) == 1  # no record: still never the partial one


def test_an_older_checkpoint_never_wins(tmp_path: Path) -> None:
    # Folder numbers alone do not say which is newer: a resumed trial numbers on from
    # the record and rewrites the folders after it, so a later folder can hold an
    # earlier epoch; and a folder before the record is older by definition (with PBT it
    # can hold a later epoch of the lineage the trial left when it exploited another).
    recorded = _write(tmp_path, 2, epoch=4)
    _write(tmp_path, 3, epoch=3)  # stale: from before the trial was last resumed
    _write(tmp_path, 1, epoch=7)  # before the record
    assert _epoch(recorded, tmp_path) == 4


def test_another_trials_checkpoint_is_taken_as_it_is(tmp_path: Path) -> None:
    # PBT's exploit hands a trial its donor's checkpoint: the trial's own newer ones
    # belong to the configuration it is leaving.
    donor = _write(tmp_path / "trial_donor", 2, epoch=2)
    own = tmp_path / "trial_own"
    _write(own, 5, epoch=5)
    assert _epoch(donor, own) == 2


def test_nothing_written_means_start_from_scratch(tmp_path: Path) -> None:
    assert _epoch(None, tmp_path / "not_created_yet") is None
    (tmp_path / "checkpoint_000000").mkdir()
    assert _epoch(None, tmp_path) is None


@pytest.mark.integration
def test_a_trial_in_a_bucket_resumes_from_its_newest_whole_checkpoint(tmp_path: Path) -> None:
    # The same choice where a cluster keeps its trials: S3 (a real endpoint, moto's).
    from tests.support.s3 import s3_server_in_env
    from unetflow.storage import ray_storage

    with s3_server_in_env("trials"):
        root, s3 = ray_storage("s3://trials/search")
        assert s3 is not None
        trial = f"{root}/trial_x"

        def upload(index: int, data: bytes) -> ray.tune.Checkpoint:
            path = f"{trial}/checkpoint_{index:06d}"
            with s3.open_output_stream(f"{path}/{CHECKPOINT_FILE}") as out:
                out.write(data)
            return ray.tune.Checkpoint(path, s3)

        def whole(epoch: int) -> bytes:
            save_checkpoint({"epoch": epoch}, tmp_path / f"{epoch}.pt")
            return (tmp_path / f"{epoch}.pt").read_bytes()

        recorded = upload(1, whole(1))
        upload(2, whole(2))
        upload(3, whole(3)[:100])  # cut off
        resume = newest_state(recorded, s3, trial)
        assert resume is not None and resume.state["epoch"] == 2 and resume.unreported
