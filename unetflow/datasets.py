"""Training data as the config names it: a prepared set (folder or URI), or raw pairs.

`data.path` may point at a prepared data set (manifest.json + cases/, what DVC's
`prepare` stage writes), the same in object storage (`s3://bucket/prefix`), or a plain
folder of image/mask pairs. A plain folder is prepared on the fly, case by case in
parallel processes, into `<project>/.unetflow/prepared/<hash>`, where the hash covers
the files' bytes and the preparation settings: an unchanged folder is prepared once,
and any edit to it yields a new prepared set (and a new data version, so a new run).
Cases may differ in shape; NIfTI spacing and affine are kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from unet_core.data import (
    SPLIT_NAMES,
    DataError,
    read_manifest,
    scan_folder,
    split_indices,
    write_manifest,
)
from unet_core.data.manifest import MANIFEST, Case
from unet_core.data.store import is_remote
from unetflow.config import ExperimentConfig
from unetflow.data_params import SplitParams
from unetflow.prepare_cases import FileJob, default_workers, run_jobs

Spacing = Sequence[float] | None

# check(where, the cases (labels, shape), cases per split): raises DataError for data
# the caller cannot use.
DataCheck = Callable[[Path | str, Sequence[Case], dict[str, int]], None]

PREPARED_ROOT = Path(".unetflow") / "prepared"
_FORMAT = "folder-v2"  # bump when the preparation below changes what it writes
FOLDER_VERSION = "folder-"  # data version of a raw folder: this prefix + its content hash
MANIFEST_VERSION = "manifest-"  # data version of a prepared URI: this prefix + manifest hash
MIN_FOLDER_CASES = 4  # the smallest folder whose default split leaves no split empty


def is_raw_folder(path: Path) -> bool:
    """True for a folder with `images/` and `masks/` and no manifest."""
    return (
        (path / "images").is_dir() and (path / "masks").is_dir() and not (path / MANIFEST).exists()
    )


def folder_hash(
    root: Path, spatial_dims: int, in_channels: int, target_spacing: Spacing = None
) -> str:
    """A short hash of every image and mask file (names and bytes) and the settings."""
    settings: list = [_FORMAT, spatial_dims, in_channels, SplitParams().model_dump(mode="json")]
    if target_spacing is not None:  # unset: the hash folders had before it existed
        settings.append(list(target_spacing))
    digest = hashlib.sha256(json.dumps(settings).encode())
    for sample in scan_folder(root, spatial_dims):
        for path in (sample.image_path, sample.mask_path):
            digest.update(f"{path.parent.name}/{path.name}\0".encode())
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def prepare_folder(
    root: Path,
    out: Path,
    spatial_dims: int,
    in_channels: int,
    check: DataCheck | None = None,
    workers: int | None = None,
    target_spacing: Spacing = None,
) -> None:
    """Check, split and write `root` case by case at `out` (atomically), each case
    resampled to `target_spacing` when one is given (as `unetflow data prepare` does).

    `check(root, cases, counts)` runs once the cases are read, before anything appears
    at `out`: data the config cannot train on leaves no prepared folder behind.
    """
    samples = scan_folder(root, spatial_dims)
    split = SplitParams()  # the DVC prepare stage's defaults: one place for both
    idx = split_indices(len(samples), split.fractions, seed=split.seed)
    counts = {k: len(v) for k, v in idx.items()}
    check_counts(root / "images", counts)
    jobs = [
        FileJob(samples[i].stem, name, samples[i], spatial_dims, in_channels)
        for name, rows in idx.items()
        for i in rows.tolist()
    ]
    created = [p for p in (out.parent, *out.parent.parents) if not p.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out.parent))
    try:
        cases = run_jobs(jobs, str(staging), workers or default_workers(), target=target_spacing)
        if check is not None:
            check(root, cases, counts)
        meta = {"source": "folder", "folder": str(root)}
        write_manifest(staging, cases, meta=meta, target_spacing=target_spacing)
        try:
            staging.rename(out)  # nothing half-written ever appears at `out`
        except OSError:
            if not (out / MANIFEST).exists():  # lost a race to an identical writer: fine
                raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # refused data leaves no trace, not even empty folders
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"prepared folder {root} ({sum(counts.values())} images {counts}) into {out}", flush=True)


def check_counts(where: Path | str, counts: dict[str, int]) -> None:
    """Every split needs a case: training, validation each epoch and the test evaluation."""
    empty = [name for name in SPLIT_NAMES if counts.get(name, 0) < 1]
    if empty:
        total = sum(counts.values())
        raise DataError(
            where,
            f"{total} image(s) give an empty {'/'.join(empty)} split {counts}; "
            f"add image/mask pairs (a folder needs at least {MIN_FOLDER_CASES})",
        )


def resolve_data(
    project_dir: Path,
    data_path: str,
    spatial_dims: int,
    in_channels: int,
    check: DataCheck | None = None,
    target_spacing: Spacing = None,
) -> tuple[Path | str, str | None]:
    """The prepared data set for `data.path`, and its data version when known here.

    Args:
        check: `check(where, cases, counts)` raises `DataError` for data the caller
            cannot use; it runs before a raw folder is written out.
        target_spacing: `data.target_spacing`: a raw folder is resampled to it; a
            prepared set must have been prepared with it.

    Returns:
        `(prepared folder, None)` when `data.path` is a prepared folder (the caller's
        data version stands), `(URI, "manifest-<hash>")` for a prepared set in object
        storage (workers read it there), or `(prepared folder, "folder-<hash>")` for a
        raw folder.

    Raises:
        DataError: `data.path` is missing, empty, neither prepared nor an `images/` +
            `masks/` folder, or its files are unreadable or inconsistent.
    """
    if is_remote(data_path):
        manifest = read_manifest(data_path)  # fails here, with the URI, not in a worker
        check_target(data_path, manifest.target_spacing, target_spacing)
        counts = {k: manifest.count(k) for k in manifest.splits}
        check_counts(data_path, counts)
        if check is not None:
            check(data_path, manifest.cases, counts)
        return data_path.rstrip("/"), f"{MANIFEST_VERSION}{manifest.version()[:16]}"
    path = (project_dir / data_path).resolve()
    if not is_raw_folder(path):
        _check_prepared(path, spatial_dims, in_channels, check)
        check_target(path / MANIFEST, read_manifest(path).target_spacing, target_spacing)
        return path, None
    digest = folder_hash(path, spatial_dims, in_channels, target_spacing)
    out = project_dir.resolve() / PREPARED_ROOT / digest
    if not (out / MANIFEST).exists():
        prepare_folder(path, out, spatial_dims, in_channels, check, target_spacing=target_spacing)
    elif check is not None:
        manifest = read_manifest(out)
        check(path, manifest.cases, {k: manifest.count(k) for k in manifest.splits})
    return out, f"{FOLDER_VERSION}{digest}"


def check_target(where: Path | str, prepared: Spacing, wanted: Spacing) -> None:
    """A prepared set can only be trained at the spacing it was prepared at."""
    if wanted is not None and (prepared is None or tuple(prepared) != tuple(wanted)):
        got = "its native spacings" if prepared is None else f"{list(prepared)}"
        raise DataError(
            where,
            f"was prepared at {got} but data.target_spacing is {list(wanted)}; re-prepare "
            "it with that target_spacing in params.yaml, or set data.target_spacing: null",
        )


def _check_prepared(
    path: Path, spatial_dims: int, in_channels: int, check: DataCheck | None
) -> None:
    """A prepared folder exists, matches the model's dims and channels, and passes `check`."""
    what = "point data.path at a prepared data set or a folder with images/ and masks/"
    if not path.exists():
        raise DataError(path, f"data.path does not exist; {what}")
    if not path.is_dir():
        raise DataError(path, f"data.path is a file, not a folder; {what}")
    if not (path / MANIFEST).exists():
        if not any(path.iterdir()):
            raise DataError(path, f"data.path is an empty folder; {what}")
        raise DataError(path, f"data.path holds neither manifest.json nor images/ + masks/; {what}")
    manifest = read_manifest(path)
    where = path / MANIFEST
    if manifest.spatial_dims != spatial_dims:
        raise DataError(
            where,
            f"data is {manifest.spatial_dims}D but model.spatial_dims is {spatial_dims}; "
            "set model.spatial_dims to match the data",
        )
    if manifest.in_channels != in_channels:
        raise DataError(
            where,
            f"images have {manifest.in_channels} channel(s) but model.in_channels is "
            f"{in_channels}; set model.in_channels: {manifest.in_channels}",
        )
    counts = {k: manifest.count(k) for k in manifest.splits}
    check_counts(where, counts)
    if check is not None:
        check(where, manifest.cases, counts)


def config_check(cfg: ExperimentConfig, planning: bool = False) -> DataCheck:
    """A `DataCheck` refusing data that `cfg` cannot train on: mask labels beyond what
    `loss.mode` / `model.out_channels` learn (0/255 masks are read as 0/1, so they pass
    as binary), and cases of different shapes without `data.patch_size` (unless
    `planning`: the plan sets a patch for such data)."""
    mode, out_channels = cfg.loss.mode, cfg.model.out_channels

    def check(where: Path | str, cases: Sequence[Case], counts: dict[str, int]) -> None:
        labels = sorted({v for case in cases for v in case.labels})
        found = ", ".join(map(str, labels))
        top = max(labels, default=0)
        if mode == "binary" and top > 1:
            raise DataError(
                where,
                f"masks hold labels {{{found}}} but loss.mode 'binary' takes 0/1 (or 0/255) "
                f"masks; set loss.mode: multiclass and model.out_channels: {top + 1}",
            )
        if mode == "multiclass" and top >= out_channels:
            raise DataError(
                where,
                f"masks hold labels {{{found}}} but model.out_channels is {out_channels} "
                f"(labels 0..{out_channels - 1}); set model.out_channels: {top + 1}",
            )
        shapes = sorted({case.shape for case in cases})
        if cfg.data.patch_size is None and len(shapes) > 1 and not planning:
            raise DataError(
                where,
                f"images have different shapes {shapes[:3]}, so whole images cannot be "
                "batched; set data.patch_size to train on patches",
            )

    return check


def resolve_for(
    project_dir: Path, cfg: ExperimentConfig, planning: bool = False
) -> tuple[Path, str | None]:
    """`resolve_data` for `cfg`: refuses data its model and loss cannot train on
    (`config_check`; ``planning``: before the plan fills the unset settings).

    Runs on the driver, so bad data fails in one line before any Ray worker starts.
    """
    model = cfg.model
    return resolve_data(
        project_dir,
        cfg.data.path,
        model.spatial_dims,
        model.in_channels,
        config_check(cfg, planning=planning),
        cfg.data.target_spacing,
    )
