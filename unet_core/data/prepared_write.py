"""Writing the prepared format (see `prepared`): case by case, then the manifest.

`write_case` checks one image/mask pair, writes its two chunked arrays and returns its
`Case` record (content hash, labels, foreground sample, channel sums); it holds one case
in memory, so callers can prepare any number of cases in parallel processes.
`write_manifest` pools the records into a `Manifest` and writes it last: a reader never
sees a manifest that names a case not yet written. `write_prepared` does both for
in-memory splits (tests, small sets).

Example:
    >>> case = write_case("s3://bucket/prep", "ct_001", "train", image, mask, spacing=(2, 1, 1))
    >>> manifest = write_manifest("s3://bucket/prep", [case, ...], meta={"source": "ct"})
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from unet_core.data import store as st
from unet_core.data.errors import DataError
from unet_core.data.folder import check_image, check_mask
from unet_core.data.manifest import (
    CASES,
    MANIFEST,
    Case,
    ChannelStats,
    Manifest,
    SourceGeometry,
    case_dir,
    content_sha256,
)

# Foreground voxel locations kept per label and case: enough to centre patches on
# varied foreground, small enough that a manifest of 10k cases stays a few MB.
FOREGROUND_SAMPLES = 64
# Spatial chunk shape: a 3D chunk of 64^3 float32 is 1 MiB, a few per patch; 2D images
# are usually read whole or in large tiles.
DEFAULT_CHUNKS = {2: (256, 256), 3: (64, 64, 64)}

SplitArrays = tuple[Sequence[np.ndarray] | np.ndarray, Sequence[np.ndarray] | np.ndarray, Sequence[str]]


def check_case(
    image: np.ndarray, mask: np.ndarray, where: str, in_channels: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``image [C, *spatial]`` (kept in its dtype) and ``mask [*spatial]`` (uint8)."""
    image = check_image(np.asarray(image), where, in_channels, keep_dtype=True)
    mask = check_mask(np.asarray(mask), where)
    if image.shape[1:] != mask.shape:
        raise DataError(where, f"mask shape {mask.shape} differs from image shape {image.shape[1:]}")
    return image, mask


def _foreground(mask: np.ndarray, labels: list[int], seed: str) -> dict[str, tuple]:
    """Up to `FOREGROUND_SAMPLES` voxel locations per foreground label, seeded by content."""
    rng = np.random.default_rng(int(seed[:16], 16))
    out = {}
    for label in labels:
        if label == 0:
            continue
        flat = np.flatnonzero(mask == label)
        if len(flat) > FOREGROUND_SAMPLES:
            flat = np.sort(rng.choice(flat, FOREGROUND_SAMPLES, replace=False))
        out[str(label)] = tuple(zip(*(a.tolist() for a in np.unravel_index(flat, mask.shape)), strict=False))
    return out


def _channel_stats(image: np.ndarray) -> ChannelStats:
    """Per-channel sums in float64, one channel at a time (bounded extra memory)."""
    sums, sq, lows, highs = [], [], [], []
    for channel in image:
        values = channel.astype(np.float64).ravel()
        sums.append(float(values.sum()))
        sq.append(float(np.dot(values, values)))
        lows.append(float(values.min()) if values.size else 0.0)
        highs.append(float(values.max()) if values.size else 0.0)
    count = int(np.prod(image.shape[1:]))
    return ChannelStats(count=count, sum=tuple(sums), sum_sq=tuple(sq), min=tuple(lows), max=tuple(highs))


def case_record(
    stem: str,
    split: str,
    image: np.ndarray,
    mask: np.ndarray,
    spacing: Sequence[float] | None = None,
    affine: np.ndarray | None = None,
    source: SourceGeometry | None = None,
) -> Case:
    """The manifest entry of one checked case (`source`: its grid before resampling)."""
    dims = mask.ndim
    spacing = tuple(float(s) for s in spacing) if spacing is not None else (1.0,) * dims
    if len(spacing) != dims or min(spacing) <= 0:
        raise DataError(stem, f"spacing {spacing} needs {dims} positive values")
    matrix = np.eye(dims + 1) if affine is None else np.asarray(affine, dtype=np.float64)
    digest = content_sha256(image, mask)
    labels = np.unique(mask).tolist()
    return Case(
        stem=stem,
        split=split,
        shape=tuple(mask.shape),
        spacing=spacing,
        affine=tuple(tuple(float(v) for v in row) for row in matrix),
        dtype=image.dtype.str,
        sha256=digest,
        labels=tuple(labels),
        foreground=_foreground(mask, labels, digest),
        stats=_channel_stats(image),
        source=source,
    )


def _write_array(where: str, data: np.ndarray, chunks: tuple[int, ...], options: Any) -> None:
    import zarr
    from zarr.codecs import Crc32cCodec, ZstdCodec

    kwargs = {} if options is None else {"storage_options": options}
    array = zarr.create_array(
        store=where,
        shape=data.shape,
        dtype=data.dtype,
        chunks=chunks,
        compressors=[ZstdCodec(level=3), Crc32cCodec()],  # crc32c: corrupt chunks fail on read
        fill_value=0,
        overwrite=True,
        **kwargs,
    )
    array[...] = data


def write_case(
    root: st.Location,
    stem: str,
    split: str,
    image: np.ndarray,
    mask: np.ndarray,
    spacing: Sequence[float] | None = None,
    affine: np.ndarray | None = None,
    chunks: Sequence[int] | None = None,
    options: st.StorageOptions = None,
    source: SourceGeometry | None = None,
) -> Case:
    """Check and write one case; returns its manifest record.

    Args:
        root: the prepared data set (folder or URI).
        image: ``[C, *spatial]``, any numeric dtype (kept).
        mask: ``[*spatial]`` integer labels 0..255 (stored as uint8).
        spacing: voxel size per spatial axis; None: 1.0.
        affine: ``(dims+1, dims+1)`` voxel-to-world matrix; None: identity.
        chunks: spatial chunk shape; None: `DEFAULT_CHUNKS`.
        source: the grid the case had before it was resampled; None: not resampled.
    """
    image, mask = check_case(image, mask, stem)
    record = case_record(stem, split, image, mask, spacing, affine, source)
    spatial = tuple(chunks or DEFAULT_CHUNKS[mask.ndim])
    clipped = tuple(max(1, min(c, s)) for c, s in zip(spatial, mask.shape, strict=True))
    options = st.resolve_options(root, options)
    where = case_dir(st.normalise(root), stem)
    _remove_quietly(where, options)  # empty chunks are not written: clear an old case first
    _write_array(st.join(where, "image"), image, (image.shape[0], *clipped), options)
    _write_array(st.join(where, "mask"), mask, clipped, options)
    return record


def _remove_quietly(where: str, options: st.StorageOptions) -> None:
    with contextlib.suppress(FileNotFoundError):
        st.remove_tree(where, options)


def _pooled(cases: Sequence[Case]) -> tuple[tuple, tuple, tuple]:
    """Train mean, std (>= 1e-6) and (min, max) per channel from the cases' sums."""
    count = sum(c.stats.count for c in cases)
    if not cases or count == 0:
        raise DataError("split 'train'", "is empty; normalisation statistics need training data")
    total = np.sum([c.stats.sum for c in cases], axis=0)
    total_sq = np.sum([c.stats.sum_sq for c in cases], axis=0)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    low = np.min([c.stats.min for c in cases], axis=0)
    high = np.max([c.stats.max for c in cases], axis=0)
    ranges = tuple((float(a), float(b)) for a, b in zip(low, high, strict=True))
    return tuple(mean.tolist()), tuple(np.maximum(std, 1e-6).tolist()), ranges


def build_manifest(
    cases: Sequence[Case],
    chunks: Sequence[int] | None = None,
    meta: Mapping | None = None,
    target_spacing: Sequence[float] | None = None,
) -> Manifest:
    """Pool case records into a manifest (no I/O); refuses inconsistent cases.

    ``target_spacing``: the spacing every case was resampled to (None: native spacing).
    """
    if not any(c.split == "train" for c in cases):
        raise DataError("split 'train'", "is empty; normalisation statistics need training data")
    dims = {len(c.shape) for c in cases}
    channels = {len(c.stats.sum) for c in cases}
    if len(dims) != 1 or len(channels) != 1:
        raise DataError(None, f"cases disagree on dimensions {dims} or channels {channels}")
    stems = [c.stem for c in cases]
    if len(set(stems)) != len(stems):
        raise DataError(None, "two cases share a stem; keep stems unique across splits")
    target = tuple(float(v) for v in target_spacing) if target_spacing is not None else None
    off = [c.stem for c in cases if target is not None and not np.allclose(c.spacing, target)]
    if off:
        raise DataError(off[0], f"spacing differs from the target spacing {target}")
    mean, std, ranges = _pooled([c for c in cases if c.split == "train"])
    (spatial_dims,) = dims
    return Manifest(
        spatial_dims=spatial_dims,
        in_channels=channels.pop(),
        chunks=tuple(chunks or DEFAULT_CHUNKS[spatial_dims]),
        labels=tuple(sorted(set().union(*(c.labels for c in cases)))),
        mean=mean,
        std=std,
        intensity_range=ranges,
        cases=tuple(sorted(cases, key=lambda c: (c.split, c.stem))),
        meta=dict(meta or {}),
        target_spacing=target,
    )


def write_manifest(
    root: st.Location,
    cases: Sequence[Case],
    chunks: Sequence[int] | None = None,
    meta: Mapping | None = None,
    options: st.StorageOptions = None,
    target_spacing: Sequence[float] | None = None,
) -> Manifest:
    """Write the manifest (last), then delete cases an earlier write left behind."""
    manifest = build_manifest(cases, chunks, meta, target_spacing)
    root = st.normalise(root)
    text = manifest.model_dump_json(indent=1) + "\n"
    st.write_text(st.join(root, MANIFEST), text, options)
    keep = {f"{c.stem}.zarr" for c in cases}
    for name in st.list_names(st.join(root, CASES), st.resolve_options(root, options)):
        if name not in keep:
            _remove_quietly(st.join(root, CASES, name), st.resolve_options(root, options))
    return manifest


def write_prepared(
    out: st.Location,
    splits: Mapping[str, SplitArrays],
    meta: Mapping[str, Any] | None = None,
    chunks: Sequence[int] | None = None,
    options: st.StorageOptions = None,
) -> Manifest:
    """Write in-memory splits ``name -> (images, masks, stems)``; nothing is written
    unless every case passes its checks and the train split is usable.
    """
    if "train" not in splits:
        raise DataError(None, f"splits must include 'train', got {sorted(splits)}")
    checked = []
    for name, (images, masks, stems) in splits.items():
        if len(stems) != len(images) or len(images) != len(masks):
            raise DataError(f"split {name!r}", f"{len(stems)} stems, {len(images)} images, {len(masks)} masks")
        for stem, image, mask in zip(stems, images, masks, strict=True):
            checked.append((str(stem), name, *check_case(image, mask, f"split {name!r}: {stem}")))
    records = [case_record(stem, name, image, mask) for stem, name, image, mask in checked]
    build_manifest(records, chunks, meta)  # refuses bad input before anything is written
    for stem, name, image, mask in checked:
        write_case(out, stem, name, image, mask, chunks=chunks, options=options)
    return write_manifest(out, records, chunks, meta, options)
