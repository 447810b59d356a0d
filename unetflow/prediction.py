"""Prediction over a folder or an object-store prefix, in this process or on Ray workers.

The driver lists the inputs once and drops every case whose output already exists, so
a rerun after a crash (of the driver, a worker or a node) finishes the job without
redoing what was written. Each mask is written whole: a temporary sibling renamed into
place on a local disk, one PUT on S3 (an object appears complete or not at all).

Both paths call `predict_case` through the one inference path (`Segmenter`), so the
distributed run writes exactly the masks of the sequential one.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unet_core.data import EXTENSIONS, check_image, read_array
from unet_core.data import store as st
from unet_core.data.folder import file_extension, read_geometry, to_channels_first
from unet_core.engine import save_checkpoint
from unet_core.package import Segmenter, load_package
from unetflow.errors import UsageError


@dataclass(frozen=True)
class Job:
    """One input image and where its mask goes (paths or URIs)."""

    src: str
    dest: str


@dataclass(frozen=True)
class Options:
    """How each case is predicted; the same for every worker."""

    tta: bool = False
    patch: tuple[int, ...] | None = None
    storage: st.StorageOptions = None  # fsspec options of the S3 endpoint (no secrets)


def list_images(location: str, spatial_dims: int) -> list[str]:
    """Supported images directly under `location` (hidden files skipped), sorted."""
    allowed = EXTENSIONS[spatial_dims]
    names = _names(location)
    files = [st.join(location, n) for n in names if not n.startswith(".") and _ext(n) in allowed]
    if not files:
        raise UsageError(
            f"--input {location}: no images with extensions {allowed} for a {spatial_dims}D model"
        )
    return files


def _names(location: str) -> list[str]:
    if not st.is_remote(location):
        folder = Path(location)
        if not folder.is_dir():
            raise UsageError(f"--input {location}: not a folder; pass a folder of images")
        return sorted(p.name for p in folder.iterdir() if p.is_file())
    fs, path = st.filesystem(location)
    try:
        entries = fs.ls(path, detail=True)
    except FileNotFoundError:
        entries = []
    except Exception as err:  # endpoint down, no such bucket, refused credentials
        raise UsageError(f"--input {location}: cannot list ({type(err).__name__}: {err})") from None
    return sorted(e["name"].rsplit("/", 1)[-1] for e in entries if e.get("type") == "file")


def _ext(name: str) -> str:
    return file_extension(Path(name))


def output_name(src: str) -> str:
    """The mask's file name: the input's stem; nii becomes nii.gz, others keep theirs."""
    name = src.rstrip("/").rsplit("/", 1)[-1]
    ext = _ext(name)
    stem = name[: -len(ext) - 1]
    return f"{stem}.{'nii.gz' if ext in ('nii', 'nii.gz') else ext}"


def plan_jobs(inputs: list[str], out: str) -> tuple[list[Job], int]:
    """The jobs still to run, and how many inputs already have their mask in `out`."""
    done = set(_names(out)) if _exists(out) else set()
    jobs = [Job(src, st.join(out, output_name(src))) for src in inputs]
    todo = [job for job in jobs if output_name(job.src) not in done]
    return todo, len(jobs) - len(todo)


def _exists(location: str) -> bool:
    if not st.is_remote(location):
        return Path(location).is_dir()
    fs, path = st.filesystem(location)
    return bool(fs.exists(path))


def prepare_output(out: str, inputs: str) -> None:
    """Refuse writing into the input folder; create a local output folder."""
    if st.normalise(out) == st.normalise(inputs):
        raise UsageError(f"--output {out}: same as --input; pick another folder")
    if not st.is_remote(out):
        Path(out).mkdir(parents=True, exist_ok=True)


def predict_case(segmenter: Segmenter, job: Job, options: Options) -> str:
    """Predict one input and write its mask; returns a one-line summary."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="unetflow-predict-") as tmp:
        local = _fetch(job.src, Path(tmp), options.storage)
        dims = segmenter.config.spatial_dims
        image = to_channels_first(read_array(local), dims, job.src)
        image = check_image(image, job.src, segmenter.config.in_channels)
        mask = segmenter(
            torch.from_numpy(image)[None],
            tta=options.tta,
            patch=options.patch,
            spacing=_spacing(local, dims),
        )[0]
        if st.is_remote(job.dest):
            written = Path(tmp) / "out" / output_name(job.src)
            written.parent.mkdir()
            write_mask(mask.cpu().numpy(), local, written, segmenter.spec.mode)
            fs, path = st.filesystem(job.dest, options.storage)
            fs.put_file(str(written), path)  # one PUT: the object appears whole or not
        else:
            write_mask(mask.cpu().numpy(), local, Path(job.dest), segmenter.spec.mode)
    shape = "x".join(map(str, image.shape[1:]))
    name = job.src.rsplit("/", 1)[-1]
    return f"{name} ({shape}) -> {output_name(job.src)} {time.perf_counter() - started:.2f}s"


def _spacing(path: Path, dims: int) -> tuple[float, ...] | None:
    """The voxel size in a NIfTI header; None for formats without one (taken as they come)."""
    if _ext(path.name) not in ("nii", "nii.gz"):
        return None
    return read_geometry(path, dims)[0]


def _fetch(src: str, tmp: Path, storage: st.StorageOptions) -> Path:
    """A local file holding `src` (downloaded into `tmp` when it is a URI)."""
    if not st.is_remote(src):
        return Path(src)
    local = tmp / src.rsplit("/", 1)[-1]
    fs, path = st.filesystem(src, storage)
    fs.get_file(path, str(local))
    return local


def write_mask(mask: np.ndarray, source: Path, dest: Path, mode: str) -> None:
    """Write atomically in `dest`'s format; a crash never leaves a truncated mask.

    png -> png (binary masks as 0/255 so they are visible), tif -> tif, npy -> npy,
    nii / nii.gz -> nii.gz with the input's affine.
    """
    ext = file_extension(dest)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-", suffix=f".{ext}")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if mode == "multilabel":
            mask = np.moveaxis(mask, 0, -1)  # channels-last, like the inputs
        _write(mask, source, tmp, ext, mode)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _write(mask: np.ndarray, source: Path, tmp: Path, ext: str, mode: str) -> None:
    if ext == "png":
        from PIL import Image

        Image.fromarray(mask * 255 if mode == "binary" else mask).save(tmp, format="PNG")
    elif ext in ("tif", "tiff"):
        import tifffile

        tifffile.imwrite(tmp, mask)
    elif ext == "npy":
        with tmp.open("wb") as f:
            np.save(f, mask)
    else:
        import nibabel as nib

        nib.save(nib.Nifti1Image(mask, nib.load(source).affine), tmp)


def run_local(segmenter: Segmenter, jobs: list[Job], options: Options) -> Iterator[str]:
    """Predict `jobs` one after another in this process; yields a line per case."""
    for job in jobs:
        yield predict_case(segmenter, job, options)


def package_bytes(segmenter: Segmenter) -> bytes:
    """The segmenter as a model package in memory: what each Ray worker loads."""
    payload = {
        "format": "unetflow-model/1",
        "model": {k: v.cpu() for k, v in segmenter.model.state_dict().items()},
        "model_config": segmenter.config.model_dump_json(),
        "inference": segmenter.spec.to_json(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        return save_checkpoint(payload, Path(tmp) / "model.pt").read_bytes()


class _Predictor:
    """A Ray Data actor: loads the model once, then predicts one job per batch."""

    def __init__(self, package: Any, options: dict[str, Any]) -> None:
        import ray

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.segmenter = load_package(io.BytesIO(ray.get(package)), device=device)
        self.options = Options(**options)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        lines = [
            predict_case(self.segmenter, Job(str(src), str(dest)), self.options)
            for src, dest in zip(batch["src"], batch["dest"], strict=True)
        ]
        return {"line": np.array(lines)}


def run_ray(
    segmenter: Segmenter, jobs: list[Job], options: Options, workers: int, use_gpu: bool
) -> Iterator[str]:
    """Predict `jobs` on `workers` Ray actors (one GPU each when `use_gpu`), via Ray Data."""
    import ray
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the caller prints one line per case
    package = ray.put(package_bytes(segmenter))
    dataset = ray.data.from_items([asdict(job) for job in jobs], override_num_blocks=len(jobs))
    predicted = dataset.map_batches(
        _Predictor,
        fn_constructor_kwargs={"package": package, "options": asdict(options)},
        batch_size=1,
        concurrency=workers,
        num_cpus=1,
        num_gpus=1 if use_gpu else 0,
    )
    for row in predicted.iter_rows():
        yield str(row["line"])
