"""Prepare cases in parallel: each job reads one case, checks it and writes its arrays.

A job names where its case comes from (two files of a folder, the same from the ingested
raw area with their recorded sha256, or arrays already in memory); the worker process reads it, writes it with
`write_case` to a folder or straight to ``s3://bucket/prefix`` and returns the `Case`
record. Peak memory is a few cases per process, whatever the size of the data set; the
manifest is written last, by the caller.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from unet_core.data import Case, DataError, Sample, load_pair, read_geometry, write_case
from unet_core.data.manifest import SourceGeometry, sha256_file
from unet_core.data.resample import (
    resample_image,
    resample_mask,
    resampled_affine,
    same_spacing,
)


@dataclass(frozen=True)
class FileJob:
    """One image/mask file pair of a folder."""

    stem: str
    split: str
    sample: Sample
    spatial_dims: int
    in_channels: int | None = None

    def load(self) -> tuple[np.ndarray, np.ndarray, tuple[float, ...], np.ndarray]:
        image, mask = load_pair(self.sample, self.spatial_dims, self.in_channels, keep_dtype=True)
        spacing, affine = read_geometry(self.sample.image_path, self.spatial_dims)
        return image, mask, spacing, affine


@dataclass(frozen=True)
class RawJob:
    """One image/mask pair of the ingested raw area, checked against its recorded sha256."""

    stem: str
    split: str
    sample: Sample
    spatial_dims: int
    sha256: tuple[str, str]  # of the image file and of the mask file, from raw.json

    def load(self) -> tuple[np.ndarray, np.ndarray, tuple[float, ...], np.ndarray]:
        paths = (self.sample.image_path, self.sample.mask_path)
        for path, digest in zip(paths, self.sha256, strict=True):
            if sha256_file(path) != digest:
                raise DataError(path, "sha256 differs from raw.json; re-run `dvc repro ingest`")
        return FileJob(self.stem, self.split, self.sample, self.spatial_dims).load()


@dataclass(frozen=True)
class ArrayJob:
    """A case already in memory (generated data)."""

    stem: str
    split: str
    image: np.ndarray
    mask: np.ndarray

    def load(self) -> tuple[np.ndarray, np.ndarray, None, None]:
        return self.image, self.mask, None, None


Job = FileJob | RawJob | ArrayJob


def run_job(
    job: Job,
    out: str,
    chunks: Sequence[int] | None,
    options: dict | None,
    target: Sequence[float] | None = None,
) -> Case:
    """Read, check and write one case (in a worker process); returns its record.

    ``target``: resample the case to this spacing first (None: keep its own).
    """
    image, mask, spacing, affine = job.load()
    source = None
    if target is not None:
        spacing = spacing or (1.0,) * mask.ndim  # arrays without a header: 1 per voxel
        affine = np.eye(mask.ndim + 1) if affine is None else affine
        source = SourceGeometry(shape=mask.shape, spacing=spacing)
        image, mask, affine = _resampled(job.stem, image, mask, spacing, affine, target)
        spacing = tuple(target)
    return write_case(
        out, job.stem, job.split, image, mask, spacing, affine, chunks, options, source
    )


def _resampled(
    stem: str,
    image: np.ndarray,
    mask: np.ndarray,
    spacing: Sequence[float],
    affine: np.ndarray,
    target: Sequence[float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image (linear) and mask (nearest) on the target grid, and that grid's affine."""
    if image.shape[1:] != mask.shape:  # checked again by write_case; resampling needs it
        raise DataError(stem, f"image shape {image.shape[1:]} differs from mask {mask.shape}")
    if same_spacing(spacing, target):
        return image, mask, affine
    moved = resample_image(image, spacing, target)
    if np.issubdtype(image.dtype, np.integer):
        # Linear interpolation stays within the source's range, so rounding back loses
        # < 0.5 and keeps the stored dtype: int16 CT stays 2 bytes a voxel, and the
        # planner still sees integer Hounsfield-like data (its `ct` normalisation rule).
        moved = np.rint(moved).astype(image.dtype)
    return moved, resample_mask(mask, spacing, target), resampled_affine(affine, spacing, target)


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def run_jobs(
    jobs: Sequence[Job],
    out: str,
    workers: int,
    chunks: Sequence[int] | None = None,
    options: dict | None = None,
    target: Sequence[float] | None = None,
) -> list[Case]:
    """Write every job's case with `workers` processes (1: in this process), in job order,
    each resampled to the spacing `target` when one is given.

    Worker processes are spawned, not forked: zarr and s3fs run an event loop on a
    background thread, and a fork taken while it runs can deadlock the child.
    """
    if workers <= 1 or len(jobs) <= 1:
        return [run_job(job, out, chunks, options, target) for job in jobs]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(run_job, job, out, chunks, options, target) for job in jobs]
        return [f.result() for f in futures]
