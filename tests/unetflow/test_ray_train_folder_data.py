"""`data.path` as a raw images/ + masks/ folder: prepared once, versioned by content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unet_core.data import DataError, PreparedDataset, read_manifest
from unetflow.datasets import resolve_data


def test_folder_is_prepared_once_and_reprepared_after_a_change(tmp_path: Path, raw_folder) -> None:
    raw_folder(tmp_path)
    data_dir, version = resolve_data(tmp_path, "raw", spatial_dims=2, in_channels=1)
    assert data_dir.parent == tmp_path / ".unetflow" / "prepared"
    assert version == f"folder-{data_dir.name}"
    manifest = read_manifest(data_dir)
    assert sum(len(PreparedDataset(data_dir, s)) for s in ("train", "val", "test")) == 8
    assert manifest.labels == (0, 1)  # 0/255 png masks read as 0/1
    stamp = (data_dir / "manifest.json").stat().st_mtime_ns

    again, same = resolve_data(tmp_path, "raw", spatial_dims=2, in_channels=1)
    assert (again, same) == (data_dir, version)
    assert (data_dir / "manifest.json").stat().st_mtime_ns == stamp  # not prepared twice

    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "raw" / "images" / "s0.png")
    changed, new_version = resolve_data(tmp_path, "raw", spatial_dims=2, in_channels=1)
    assert new_version != version and changed != data_dir


def test_prepared_folder_passes_through(prepared_dir: Path) -> None:
    data_dir, version = resolve_data(prepared_dir.parent, prepared_dir.name, 2, 1)
    assert data_dir == prepared_dir.resolve() and version is None


@pytest.mark.parametrize(
    "break_it,expected",
    [
        (lambda raw: (raw / "masks" / "s3.png").unlink(), "without a matching mask"),
        (lambda raw: (raw / "images" / "s1.png").write_bytes(b"junk"), "s1.png"),
    ],
)
def test_bad_folder_names_the_problem(tmp_path: Path, raw_folder, break_it, expected: str) -> None:
    break_it(raw_folder(tmp_path))
    with pytest.raises(DataError, match=expected):
        resolve_data(tmp_path, "raw", 2, 1)
    assert not list((tmp_path / ".unetflow" / "prepared").glob("[!.]*"))  # nothing half-written


def test_unrecognised_data_path_is_refused(tmp_path: Path) -> None:
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "x.csv").write_text("a,b")
    with pytest.raises(DataError, match="images/ \\+ masks/"):
        resolve_data(tmp_path, "stuff", 2, 1)
