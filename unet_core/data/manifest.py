"""The prepared format's manifest: what a prepared data set holds, and its checksums.

``manifest.json`` at the root of a prepared set lists every case (split, shape,
spacing, affine, dtype, labels, foreground sample, intensity sums) and each case's
content sha256, so the manifest's own hash is the data version. `PreparedStore`
(``prepared``) reads the arrays it describes; ``prepared_write`` writes both.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from unet_core.data import store as st
from unet_core.data.errors import DataError

MANIFEST = "manifest.json"
FORMAT_VERSION = 2
CASES = "cases"
REPREPARE = "re-prepare it with `unetflow data prepare` (or `dvc repro prepare`)"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ChannelStats(_Frozen):
    """Per-channel sums of one case, pooled over the train split into mean and std."""

    count: int  # voxels per channel
    sum: tuple[float, ...]
    sum_sq: tuple[float, ...]
    min: tuple[float, ...]
    max: tuple[float, ...]


class SourceGeometry(_Frozen):
    """A resampled case's grid before resampling (`DataParams.target_spacing`)."""

    shape: tuple[int, ...]  # spatial shape of the source
    spacing: tuple[float, ...]  # voxel size of the source


def _unset(value: object) -> bool:
    return value is None


class Case(_Frozen):
    """One image/mask pair of the prepared set."""

    stem: str
    split: str
    shape: tuple[int, ...]  # spatial shape (H, W) or (D, H, W)
    spacing: tuple[float, ...]  # voxel size per spatial axis (1.0 when the source has none)
    affine: tuple[tuple[float, ...], ...]  # (dims+1)^2 voxel -> world matrix of the source
    dtype: str  # numpy dtype string of the image array (the source's own, e.g. "<i2")
    sha256: str  # of dtype, shape and the image and mask bytes: the case's content
    labels: tuple[int, ...]  # label values present
    # label -> up to `FOREGROUND_SAMPLES` voxel locations, for foreground oversampling
    foreground: dict[str, tuple[tuple[int, ...], ...]]
    stats: ChannelStats
    # Where a resampled case came from; left out of the JSON when the case was not
    # resampled, so data prepared before resampling existed keeps its bytes and version.
    source: SourceGeometry | None = Field(None, exclude_if=_unset)


class Manifest(_Frozen):
    """Everything needed to find, check and normalise a prepared data set."""

    format_version: int = FORMAT_VERSION
    spatial_dims: int  # 2 or 3
    in_channels: int  # image channels C
    chunks: tuple[int, ...]  # spatial chunk shape (clipped to each case's shape)
    labels: tuple[int, ...]  # label values present in any split, sorted
    mean: tuple[float, ...]  # per-channel mean of the train split (float64 pooled)
    std: tuple[float, ...]  # per-channel std of the train split (>= 1e-6)
    intensity_range: tuple[tuple[float, float], ...]  # per-channel (min, max) of train
    cases: tuple[Case, ...]  # sorted by (split, stem)
    meta: dict[str, Any] = {}  # free-form provenance given by the caller
    # Every case was resampled to this spacing; None: each keeps its native spacing.
    target_spacing: tuple[float, ...] | None = Field(None, exclude_if=_unset)

    @property
    def splits(self) -> dict[str, tuple[str, ...]]:
        """Split name -> stems, in manifest order."""
        out: dict[str, list[str]] = {}
        for case in self.cases:
            out.setdefault(case.split, []).append(case.stem)
        return {name: tuple(stems) for name, stems in out.items()}

    def stems(self, split: str) -> tuple[str, ...]:
        """Stems of ``split``; a wrong name fails with the valid ones."""
        splits = self.splits
        if split not in splits:
            raise KeyError(f"unknown split {split!r}; this data set has {sorted(splits)}")
        return splits[split]

    def count(self, split: str) -> int:
        """Cases in ``split`` (0 for a split with no cases)."""
        return len(self.splits.get(split, ()))

    def case(self, stem: str) -> Case:
        for case in self.cases:
            if case.stem == stem:
                return case
        raise KeyError(f"no case {stem!r} in this data set")

    @property
    def uniform_shape(self) -> bool:
        return len({c.shape for c in self.cases}) <= 1

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """The shared shape, or the per-axis median shape when cases differ (planning)."""
        shapes = np.array([c.shape for c in self.cases])
        return tuple(int(v) for v in np.median(shapes, axis=0).round())

    def version(self) -> str:
        """sha256 of the manifest's canonical JSON: changes when any case's content does."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


def case_dir(root: st.Location, stem: str) -> str:
    return st.join(root, CASES, f"{stem}.zarr")


def read_manifest(root: st.Location, options: st.StorageOptions = None) -> Manifest:
    """Read and validate ``root/manifest.json``.

    Raises:
        DataError: missing, unreadable or invalid manifest, or the old shard format.
    """
    path = st.join(root, MANIFEST)
    try:
        raw = json.loads(st.read_text(path, options))
    except FileNotFoundError:
        raise DataError(path, "manifest not found; is this a prepared data set?") from None
    except (OSError, ValueError) as err:
        raise DataError(path, f"cannot read manifest ({type(err).__name__}: {err})") from err
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if version == 1:
        raise DataError(path, f"is the old shard format (format_version 1); {REPREPARE}")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise DataError(
            path,
            f"format_version {version} was written by a newer unetflow (this one reads "
            f"{FORMAT_VERSION}); upgrade unetflow, or {REPREPARE}",
        )
    if version != FORMAT_VERSION:
        raise DataError(path, f"format_version {version} is not {FORMAT_VERSION}; {REPREPARE}")
    try:
        return Manifest.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        raise DataError(
            path, f"invalid manifest: {'.'.join(map(str, first['loc']))}: {first['msg']}"
        ) from err


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a local file, streamed through one reused buffer."""
    with Path(path).open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def content_sha256(image: Any, mask: Any) -> str:
    """Hash of what a case holds (dtype, shapes, bytes), independent of chunks and codecs.

    Args:
        image: ``[C, *spatial]`` numpy array, or a zarr array (read one chunk row at a
            time, so checking a stored case holds a slab in memory, not the case).
        mask: ``[*spatial]`` label map, likewise.
    """
    digest = hashlib.sha256()
    dtype = np.dtype(image.dtype)
    digest.update(f"{dtype.str}|{tuple(image.shape)}|{tuple(mask.shape)}\0".encode())
    for channel in range(image.shape[0]):
        _hash_rows(digest, image, (channel,), dtype)
    _hash_rows(digest, mask, (), np.dtype(np.uint8))
    return digest.hexdigest()


def _hash_rows(digest: Any, array: Any, lead: tuple[int, ...], dtype: np.dtype) -> None:
    """Feed ``array[*lead]`` to ``digest`` in C order, a chunk row of its next axis at a
    time (a numpy array in one piece)."""
    axis = len(lead)
    rows = getattr(array, "chunks", array.shape)[axis]
    for start in range(0, array.shape[axis], rows):
        slab = np.asarray(array[(*lead, slice(start, start + rows))])
        digest.update(np.ascontiguousarray(slab, dtype=dtype).tobytes())
