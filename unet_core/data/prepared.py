"""The prepared format: a few large shard files plus a manifest, ready for DVC.

Layout of ``out_dir``::

    manifest.json          # `Manifest`: shapes, splits, shard checksums, normalisation
    train-00000.npz        # uncompressed npz: images [n, C, *spatial] float32,
    train-00001.npz        #   masks [n, *spatial] uint8, stems [n] unicode
    val-00000.npz
    test-00000.npz

Shards are written byte-for-byte reproducibly (fixed zip timestamps, no pickles), so
re-preparing the same data leaves DVC with nothing to upload. Each file is written to a
temporary name, fsynced and renamed, so a crash never leaves a half-written file under a
final name; the manifest goes last, and a crash between shards and manifest is caught by
the checksums (`verify_shards`).

Example:
    >>> idx = split_indices(len(images), seed=0)
    >>> splits = {k: (images[i], masks[i], stems[i]) for k, i in idx.items()}
    >>> manifest = write_prepared("data/prepared", splits, meta={"source": "synthetic"})
    >>> train_images, train_masks = load_split("data/prepared", "train")
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from unet_core.data.errors import DataError
from unet_core.data.folder import check_image, check_mask

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed member timestamps keep shards byte-identical

SplitArrays = tuple[np.ndarray, np.ndarray, Sequence[str]]


class Shard(BaseModel):
    """One shard file of a split."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str  # name relative to the data set folder
    count: int  # samples in this shard
    sha256: str  # hex digest of the whole file
    bytes: int  # file size


class Manifest(BaseModel):
    """Everything needed to read, check and normalise a prepared data set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int = FORMAT_VERSION
    spatial_dims: int  # 2 or 3
    in_channels: int  # image channels C
    spatial_shape: tuple[int, ...]  # (H, W) or (D, H, W), shared by all samples
    labels: tuple[int, ...]  # label values present in any split, sorted
    mean: tuple[float, ...]  # per-channel mean of the train split (float64 accumulation)
    std: tuple[float, ...]  # per-channel std of the train split (>= 1e-6)
    splits: dict[str, tuple[Shard, ...]]  # split name -> shards in order
    meta: dict[str, Any] = {}  # free-form provenance given by the caller

    def count(self, split: str) -> int:
        """Samples in ``split``."""
        return sum(shard.count for shard in self.shards(split))

    def shards(self, split: str) -> tuple[Shard, ...]:
        """Shards of ``split``; a wrong name fails with the valid ones."""
        if split not in self.splits:
            raise KeyError(f"unknown split {split!r}; this data set has {sorted(self.splits)}")
        return self.splits[split]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_write(path: Path, write: Any) -> None:
    """Call ``write(file)`` on a temporary sibling, fsync, then rename onto ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Uncompressed npz with fixed metadata (``np.savez`` stamps the current time)."""

    def write(f: Any) -> None:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as archive:
            for key, array in arrays.items():
                info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
                with archive.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(
                        member, np.ascontiguousarray(array), allow_pickle=False
                    )

    _atomic_write(path, write)


def _validated(name: str, split: SplitArrays) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check one split's arrays and return (images f32, masks u8, stems unicode)."""
    images, masks, stems = split
    images, masks = np.asarray(images), np.asarray(masks)
    if images.ndim not in (4, 5) or masks.shape != images.shape[:1] + images.shape[2:]:
        raise DataError(
            f"split {name!r}",
            f"need images [N, C, *spatial] and masks [N, *spatial], got {images.shape} and {masks.shape}",
        )
    if len(stems) != len(images):
        raise DataError(f"split {name!r}", f"{len(stems)} stems for {len(images)} images")
    images = check_image(images, f"split {name!r}")
    masks = check_mask(masks, f"split {name!r}")
    return images, masks, np.asarray([str(s) for s in stems], dtype=np.str_)


def _norm_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std over samples and space, accumulated in float64."""
    if len(images) == 0:
        raise DataError("split 'train'", "is empty; normalisation statistics need training data")
    axes = (0, *range(2, images.ndim))
    mean = images.mean(axis=axes, dtype=np.float64)
    std = np.sqrt(
        ((images - mean.reshape(1, -1, *[1] * (images.ndim - 2))) ** 2).mean(
            axis=axes, dtype=np.float64
        )
    )
    return tuple(mean.tolist()), tuple(np.maximum(std, 1e-6).tolist())


def write_prepared(
    out_dir: str | Path,
    splits: Mapping[str, SplitArrays],
    shard_size_mb: float = 64.0,
    shard_size: int | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Manifest:
    """Write splits as shards + manifest; normalisation statistics come from ``train``.

    Args:
        out_dir: created if missing; stale shards of an earlier write are removed.
        splits: name -> ``(images [N, C, *spatial], masks [N, *spatial], stems [N])``;
            must contain ``"train"``; all splits share C and the spatial shape.
        shard_size_mb: target shard size when ``shard_size`` is not given.
        shard_size: samples per shard; wins over ``shard_size_mb``.
        meta: JSON-serialisable provenance stored in the manifest.

    Returns:
        The written `Manifest`.

    Raises:
        DataError: missing train split, inconsistent shapes, non-label masks, NaN/Inf.
    """
    if "train" not in splits:
        raise DataError(None, f"splits must include 'train', got {sorted(splits)}")
    arrays = {name: _validated(name, split) for name, split in splits.items()}
    shapes = {name: a[0].shape[1:] for name, a in arrays.items()}
    if len(set(shapes.values())) != 1:
        raise DataError(None, f"splits disagree on [C, *spatial]: {shapes}")
    channels, *spatial = next(iter(shapes.values()))
    if shard_size is not None and shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    sample_bytes = (4 * channels + 1) * int(np.prod(spatial))  # float32 image + uint8 mask
    per_shard = shard_size or max(1, int(shard_size_mb * 2**20 // sample_bytes))
    mean, std = _norm_stats(arrays["train"][0])  # fails on an empty train split before writing

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards = {name: _write_split(out, name, *a, per_shard) for name, a in arrays.items()}
    labels = sorted(set().union(*(np.unique(a[1]).tolist() for a in arrays.values())))
    manifest = Manifest(
        spatial_dims=len(spatial),
        in_channels=channels,
        spatial_shape=tuple(spatial),
        labels=tuple(labels),
        mean=mean,
        std=std,
        splits=shards,
        meta=dict(meta or {}),
    )
    text = json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
    _atomic_write(out / MANIFEST, lambda f: f.write(text.encode()))
    _remove_stale(out, manifest)
    return manifest


def _write_split(
    out: Path, name: str, images: np.ndarray, masks: np.ndarray, stems: np.ndarray, per_shard: int
) -> tuple[Shard, ...]:
    """Write one split as ``<name>-<k:05d>.npz`` shards; an empty split gets one empty shard."""
    written = []
    for k, start in enumerate(range(0, max(len(images), 1), per_shard)):
        part = slice(start, start + per_shard)
        path = out / f"{name}-{k:05d}.npz"
        _write_npz(path, {"images": images[part], "masks": masks[part], "stems": stems[part]})
        digest, size = sha256_file(path), path.stat().st_size
        written.append(Shard(file=path.name, count=len(images[part]), sha256=digest, bytes=size))
    return tuple(written)


def _remove_stale(out: Path, manifest: Manifest) -> None:
    """Delete shards left by an earlier, larger write (only after the new manifest exists)."""
    keep = {shard.file for shards in manifest.splits.values() for shard in shards}
    for path in out.glob("*-[0-9][0-9][0-9][0-9][0-9].npz"):
        if path.name not in keep:
            path.unlink()


def read_manifest(data_dir: str | Path) -> Manifest:
    """Read and validate ``data_dir/manifest.json``.

    Raises:
        DataError: missing, unreadable or invalid manifest.
    """
    path = Path(data_dir) / MANIFEST
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(path, "manifest not found; is this a prepared data set folder?") from None
    except (OSError, ValueError) as err:
        raise DataError(path, f"cannot read manifest ({type(err).__name__}: {err})") from err
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        raise DataError(
            path, f"invalid manifest: {'.'.join(map(str, first['loc']))}: {first['msg']}"
        ) from err
    if manifest.format_version != FORMAT_VERSION:
        raise DataError(
            path, f"format_version {manifest.format_version}, this code reads {FORMAT_VERSION}"
        )
    return manifest


def verify_shards(data_dir: str | Path, split: str | None = None) -> None:
    """Check the sha256 of every shard (of ``split``, or all) against the manifest.

    Raises:
        DataError: a missing shard, or one whose contents changed since it was written.
    """
    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir)
    for name in [split] if split is not None else sorted(manifest.splits):
        for shard in manifest.shards(name):
            path = data_dir / shard.file
            if not path.is_file():
                raise DataError(path, "shard listed in the manifest is missing")
            digest = sha256_file(path)
            if digest != shard.sha256:
                raise DataError(
                    path,
                    f"sha256 mismatch (manifest {shard.sha256[:12]}..., file {digest[:12]}...): "
                    "the shard is corrupt or changed after preparation; re-run prepare or `dvc pull`",
                )


def read_shard(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load one shard: ``(images, masks, stems)``; a broken file becomes `DataError`."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return npz["images"], npz["masks"], npz["stems"]
    except FileNotFoundError:
        raise DataError(path, "shard listed in the manifest is missing") from None
    except Exception as err:  # zip/npy parse failures: the file is corrupt
        raise DataError(path, f"cannot read shard ({type(err).__name__}: {err})") from err


def normalize(images: np.ndarray, manifest: Manifest) -> np.ndarray:
    """``(images - mean) / std`` per channel; images ``[..., C, *spatial]`` float32."""
    shape = (-1,) + (1,) * manifest.spatial_dims
    mean = np.asarray(manifest.mean, dtype=np.float32).reshape(shape)
    std = np.asarray(manifest.std, dtype=np.float32).reshape(shape)
    return (images - mean) / std


def load_split(
    data_dir: str | Path, split: str, normalize_images: bool = False, verify: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Load a whole split into memory.

    Args:
        data_dir: a folder written by `write_prepared`.
        split: e.g. ``"train"``.
        normalize_images: apply the manifest's train mean/std.
        verify: check shard checksums first.

    Returns:
        ``(images float32 [N, C, *spatial], masks uint8 [N, *spatial])``.
    """
    images, masks, _ = load_split_with_stems(data_dir, split, normalize_images, verify)
    return images, masks


def load_split_with_stems(
    data_dir: str | Path, split: str, normalize_images: bool = False, verify: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """As `load_split`, plus the stems ``[N]`` (unicode)."""
    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir)
    shards = manifest.shards(split)
    if verify:
        verify_shards(data_dir, split)
    parts = [read_shard(data_dir / shard.file) for shard in shards]
    images, masks, stems = (np.concatenate([p[i] for p in parts]) for i in range(3))
    if normalize_images:
        images = normalize(images, manifest)
    return images, masks, stems
