"""Prepared format: round trip, checksums, byte-identical rewrites, normalisation, errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unet_core.data import (
    DataError,
    PreparedDataset,
    generate_synthetic,
    load_split,
    load_split_with_stems,
    read_manifest,
    split_indices,
    verify_shards,
    write_prepared,
)


@pytest.fixture(scope="module")
def arrays() -> tuple[np.ndarray, np.ndarray, list[str]]:
    images, masks = generate_synthetic(30, (16, 20), seed=2)
    images = np.concatenate([images, 2 * images + 1], axis=1)  # two channels, different stats
    return images, masks, [f"img_{i:02d}" for i in range(30)]


def _splits(arrays: tuple[np.ndarray, np.ndarray, list[str]]) -> dict:
    images, masks, stems = arrays
    return {
        k: (images[i], masks[i], [stems[j] for j in i])
        for k, i in split_indices(30, seed=0).items()
    }


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_round_trip_and_manifest(tmp_path: Path, arrays: tuple) -> None:
    splits = _splits(arrays)
    manifest = write_prepared(tmp_path, splits, shard_size=4, meta={"source": "synthetic"})
    assert manifest == read_manifest(tmp_path)
    assert (manifest.spatial_dims, manifest.in_channels, manifest.spatial_shape) == (2, 2, (16, 20))
    assert manifest.labels == (0, 1) and manifest.meta == {"source": "synthetic"}
    assert len(manifest.shards("train")) == 6  # 22 samples, 4 per shard
    for name, (images, masks, stems) in splits.items():
        got_images, got_masks, got_stems = load_split_with_stems(tmp_path, name, verify=True)
        assert np.array_equal(got_images, images) and np.array_equal(got_masks, masks)
        assert got_stems.tolist() == stems and manifest.count(name) == len(stems)
    train = splits["train"][0]
    assert np.allclose(manifest.mean, train.mean(axis=(0, 2, 3)), rtol=1e-5)
    assert np.allclose(manifest.std, train.std(axis=(0, 2, 3)), rtol=1e-4)
    for shard in manifest.shards("val"):
        assert hashlib.sha256((tmp_path / shard.file).read_bytes()).hexdigest() == shard.sha256


def test_rewriting_the_same_data_is_byte_identical(tmp_path: Path, arrays: tuple) -> None:
    write_prepared(tmp_path / "a", _splits(arrays), shard_size=8)
    write_prepared(tmp_path / "b", _splits(arrays), shard_size=8)
    first = _digests(tmp_path / "a")
    assert first == _digests(tmp_path / "b")
    write_prepared(tmp_path / "a", _splits(arrays), shard_size=8)
    assert _digests(tmp_path / "a") == first  # in place too; no temp files left behind


def test_shard_size_mb_and_stale_shards(tmp_path: Path, arrays: tuple) -> None:
    per_sample_mb = (2 * 4 + 1) * 16 * 20 / 2**20
    manifest = write_prepared(tmp_path, _splits(arrays), shard_size_mb=5 * per_sample_mb)
    assert [s.count for s in manifest.shards("train")] == [5, 5, 5, 5, 2]  # 22 train samples
    write_prepared(tmp_path, _splits(arrays), shard_size=100)
    assert sorted(p.name for p in tmp_path.glob("train-*.npz")) == ["train-00000.npz"]


def test_verify_names_the_corrupt_shard(tmp_path: Path, arrays: tuple) -> None:
    manifest = write_prepared(tmp_path, _splits(arrays), shard_size=8)
    shard = tmp_path / manifest.shards("train")[1].file
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip bits inside the image payload
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"train-00001\.npz: cannot read shard"):
        load_split(tmp_path, "train")  # unverified: the zip CRC still catches it on read
    with pytest.raises(DataError, match=r"train-00001\.npz: sha256 mismatch"):
        load_split(tmp_path, "train", verify=True)
    with pytest.raises(DataError, match="sha256 mismatch"):
        PreparedDataset(tmp_path, "train", verify=True)
    verify_shards(tmp_path, "val")  # other splits are intact


def test_truncated_or_missing_shards_fail_clearly(tmp_path: Path, arrays: tuple) -> None:
    manifest = write_prepared(tmp_path, _splits(arrays), shard_size=8)
    (tmp_path / manifest.shards("val")[0].file).write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"val-00000\.npz: cannot read shard"):
        load_split(tmp_path, "val")
    (tmp_path / manifest.shards("test")[0].file).unlink()
    with pytest.raises(DataError, match="missing"):
        verify_shards(tmp_path)


def test_manifest_errors(tmp_path: Path, arrays: tuple) -> None:
    with pytest.raises(DataError, match="manifest not found"):
        read_manifest(tmp_path)
    write_prepared(tmp_path, _splits(arrays))
    raw = json.loads((tmp_path / "manifest.json").read_text())
    raw["spatial_dims"] = "two"
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(DataError, match="invalid manifest: spatial_dims"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(DataError, match="cannot read manifest"):
        read_manifest(tmp_path)


def test_unknown_split_lists_the_valid_ones(tmp_path: Path, arrays: tuple) -> None:
    write_prepared(tmp_path, _splits(arrays))
    with pytest.raises(KeyError, match="train"):
        load_split(tmp_path, "validation")


def test_write_refuses_bad_splits(tmp_path: Path, arrays: tuple) -> None:
    images, masks, stems = arrays
    with pytest.raises(DataError, match="must include 'train'"):
        write_prepared(tmp_path, {"val": (images, masks, stems)})
    with pytest.raises(DataError, match="is empty"):
        write_prepared(tmp_path, {"train": (images[:0], masks[:0], [])})
    with pytest.raises(DataError, match="disagree"):
        write_prepared(
            tmp_path, {"train": (images, masks, stems), "val": (images[:, :1], masks, stems)}
        )
    with pytest.raises(DataError, match="not integer labels"):
        write_prepared(tmp_path, {"train": (images, masks * 0.5, stems)})
    bad = images.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        write_prepared(tmp_path, {"train": (bad, masks, stems)})
    assert not list(tmp_path.iterdir())  # nothing written for refused input


def test_prepared_dataset_normalises_with_train_stats(tmp_path: Path, arrays: tuple) -> None:
    manifest = write_prepared(tmp_path, _splits(arrays))
    train = PreparedDataset(tmp_path, "train")
    image, mask = train[0]
    assert image.dtype == torch.float32 and image.shape == (2, 16, 20)
    assert mask.dtype == torch.int64 and mask.shape == (16, 20)
    stacked = torch.stack([train[i][0] for i in range(len(train))])
    assert torch.allclose(stacked.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-4)
    assert torch.allclose(stacked.std(dim=(0, 2, 3)), torch.ones(2), atol=1e-2)
    raw = PreparedDataset(tmp_path, "val", normalize=False)
    expected = (raw[0][0] - torch.tensor(manifest.mean).view(2, 1, 1)) / torch.tensor(
        manifest.std
    ).view(2, 1, 1)
    assert torch.allclose(PreparedDataset(tmp_path, "val")[0][0], expected.float(), atol=1e-5)
