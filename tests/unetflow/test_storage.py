"""Where Ray Train and Tune write run state and checkpoints."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs

from unetflow.atomic_fs import AtomicLocalHandler
from unetflow.storage import ray_storage


def test_local_storage_is_written_whole_or_not_at_all(tmp_path: Path) -> None:
    # Training and every Tune search get their filesystem here: a local folder must come
    # with the atomic one, or a full disk leaves an empty run state that cannot resume.
    path, fs = ray_storage(str(tmp_path / "runs"))
    assert path == str((tmp_path / "runs").resolve())
    assert isinstance(fs, pyarrow.fs.PyFileSystem) and isinstance(fs.handler, AtomicLocalHandler)
    with fs.open_output_stream(f"{path}/trial/state.json") as out:
        out.write(b"{}")
    assert [p.name for p in (tmp_path / "runs" / "trial").iterdir()] == ["state.json"]


def test_s3_storage_keeps_the_bucket_path_for_the_endpoint(monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    path, fs = ray_storage("s3://bucket/runs")
    assert path == "bucket/runs" and isinstance(fs, pyarrow.fs.FileSystem)
