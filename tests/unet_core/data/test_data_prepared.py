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
    PreparedStore,
    generate_synthetic,
    load_split,
    load_split_with_stems,
    read_manifest,
    split_indices,
    verify_cases,
    write_case,
    write_manifest,
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
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_round_trip_and_manifest(tmp_path: Path, arrays: tuple) -> None:
    splits = _splits(arrays)
    manifest = write_prepared(tmp_path, splits, meta={"source": "synthetic"}, chunks=(8, 8))
    assert manifest == read_manifest(tmp_path)
    assert (manifest.spatial_dims, manifest.in_channels, manifest.spatial_shape) == (2, 2, (16, 20))
    assert manifest.labels == (0, 1) and manifest.meta == {"source": "synthetic"}
    for name, (images, masks, stems) in splits.items():
        got_images, got_masks, got_stems = load_split_with_stems(tmp_path, name, verify=True)
        assert np.array_equal(got_images, images) and np.array_equal(got_masks, masks)
        assert sorted(got_stems.tolist()) == sorted(stems) and manifest.count(name) == len(stems)
    train = splits["train"][0]
    assert np.allclose(manifest.mean, train.mean(axis=(0, 2, 3)), rtol=1e-5)
    assert np.allclose(manifest.std, train.std(axis=(0, 2, 3)), rtol=1e-4)
    store = PreparedStore(tmp_path)
    stem = manifest.stems("val")[0]
    assert store.image(stem).chunks == (2, 8, 8) and store.mask(stem).dtype == np.uint8
    case = manifest.case(stem)
    assert case.spacing == (1.0, 1.0) and np.array_equal(case.affine, np.eye(3))
    mask = store.mask(stem)[:]
    for location in case.foreground["1"]:
        assert mask[tuple(location)] == 1  # the oversampling sample is real foreground


def test_manifest_hash_is_the_data_version(tmp_path: Path, arrays: tuple) -> None:
    first = write_prepared(tmp_path / "a", _splits(arrays)).version()
    assert write_prepared(tmp_path / "b", _splits(arrays)).version() == first
    images, masks, stems = arrays
    changed = images.copy()
    changed[3, 0, 5, 5] += 0.25  # one voxel of one case
    assert write_prepared(tmp_path / "c", _splits((changed, masks, stems))).version() != first


def test_rewriting_the_same_data_is_byte_identical(tmp_path: Path, arrays: tuple) -> None:
    write_prepared(tmp_path / "a", _splits(arrays))
    write_prepared(tmp_path / "b", _splits(arrays))
    first = _digests(tmp_path / "a")
    assert first == _digests(tmp_path / "b")
    write_prepared(tmp_path / "a", _splits(arrays))
    assert _digests(tmp_path / "a") == first  # in place too; no temp files left behind


def test_cases_keep_their_shape_dtype_and_geometry(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    shapes = [(10, 12, 14), (16, 9, 11), (8, 8, 20)]
    cases = []
    for k, shape in enumerate(shapes):
        image = rng.integers(-1000, 2000, (1, *shape)).astype(np.int16)  # CT-like
        mask = (rng.random(shape) > 0.8).astype(np.uint8) * (k + 1)
        affine = np.diag([0.5 * (k + 1), 1.0, 2.5, 1.0])
        split = "train" if k < 2 else "val"
        cases.append(
            write_case(tmp_path, f"c{k}", split, image, mask, (0.5 * (k + 1), 1.0, 2.5), affine)
        )
    manifest = write_manifest(tmp_path, cases)
    store = PreparedStore(tmp_path)
    for k, shape in enumerate(shapes):
        image, mask = store.load_case(f"c{k}", verify=True)
        assert image.dtype == np.int16 and image.shape == (1, *shape) and mask.shape == shape
        assert manifest.case(f"c{k}").spacing == (0.5 * (k + 1), 1.0, 2.5)
    assert manifest.labels == (0, 1, 2, 3) and not manifest.uniform_shape
    window = store.read("c1", (slice(2, 6), slice(0, 4), slice(3, 9)))
    assert window[0].shape == (1, 4, 4, 6) and window[1].shape == (4, 4, 6)
    with pytest.raises(DataError, match="shapes"):
        load_split(tmp_path, "train")  # a stacked split needs one shape


def test_stale_cases_are_removed(tmp_path: Path, arrays: tuple) -> None:
    write_prepared(tmp_path, _splits(arrays))
    images, masks, stems = arrays
    write_prepared(tmp_path, {"train": (images[:5], masks[:5], stems[:5])})
    assert sorted(p.name for p in (tmp_path / "cases").iterdir()) == [
        f"{s}.zarr" for s in stems[:5]
    ]


def test_verify_names_the_changed_or_corrupt_case(tmp_path: Path, arrays: tuple) -> None:
    manifest = write_prepared(tmp_path, _splits(arrays))
    stem = manifest.stems("train")[1]
    image, mask = PreparedStore(tmp_path).load_case(stem)
    write_case(tmp_path, stem, "train", image + 1, mask)  # valid arrays, other content
    with pytest.raises(DataError, match=rf"{stem}\.zarr: content sha256 differs"):
        verify_cases(tmp_path, "train")
    with pytest.raises(DataError, match="sha256 differs"):
        PreparedDataset(tmp_path, "train", verify=True)
    verify_cases(tmp_path, "val")  # other splits are intact
    chunk = next(
        p
        for p in (tmp_path / "cases" / f"{stem}.zarr" / "image").rglob("*")
        if p.is_file() and p.name != "zarr.json"
    )
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip bits inside a compressed chunk
    chunk.write_bytes(bytes(data))
    with pytest.raises(DataError, match=rf"{stem}\.zarr: cannot read case"):
        load_split(tmp_path, "train")  # unverified: the chunk's crc32c still catches it


def test_missing_case_fails_clearly(tmp_path: Path, arrays: tuple) -> None:
    manifest = write_prepared(tmp_path, _splits(arrays))
    stem = manifest.stems("test")[0]
    import shutil

    shutil.rmtree(tmp_path / "cases" / f"{stem}.zarr")
    with pytest.raises(DataError, match=rf"{stem}\.zarr"):
        verify_cases(tmp_path)


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


@pytest.mark.parametrize(
    ("version", "says"), [(1, "old shard format"), (None, "None is not 2"), (3, "newer unetflow")]
)
def test_other_format_versions_say_how_to_reprepare(
    tmp_path: Path, version: int | None, says: str
) -> None:
    old = {"format_version": version, "spatial_dims": 2, "splits": {"train": []}}
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    with pytest.raises(DataError, match=rf"{says}.*unetflow data prepare.*dvc repro"):
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
            tmp_path,
            {
                "train": (images, masks, stems),
                "val": (images[:, :1], masks, [f"v{s}" for s in stems]),
            },
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
