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

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

from unet_core.data import DataError, read_manifest, scan_folder, split_indices, write_manifest
from unet_core.data.prepared import MANIFEST
from unet_core.data.store import is_remote
from unetflow.data_params import SplitParams
from unetflow.prepare_cases import FileJob, default_workers, run_jobs

PREPARED_ROOT = Path(".unetflow") / "prepared"
_FORMAT = "folder-v2"  # bump when the preparation below changes what it writes
FOLDER_VERSION = "folder-"  # data version of a raw folder: this prefix + its content hash
MANIFEST_VERSION = "manifest-"  # data version of a prepared URI: this prefix + manifest hash


def is_raw_folder(path: Path) -> bool:
    """True for a folder with `images/` and `masks/` and no manifest."""
    return (
        (path / "images").is_dir() and (path / "masks").is_dir() and not (path / MANIFEST).exists()
    )


def folder_hash(root: Path, spatial_dims: int, in_channels: int) -> str:
    """A short hash of every image and mask file (names and bytes) and the settings."""
    digest = hashlib.sha256(
        json.dumps(
            [
                _FORMAT,
                spatial_dims,
                in_channels,
                SplitParams().model_dump(mode="json"),
            ]
        ).encode()
    )
    for sample in scan_folder(root, spatial_dims):
        for path in (sample.image_path, sample.mask_path):
            digest.update(f"{path.parent.name}/{path.name}\0".encode())
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def prepare_folder(
    root: Path, out: Path, spatial_dims: int, in_channels: int, workers: int | None = None
) -> None:
    """Check, split and write `root` case by case at `out` (atomically)."""
    samples = scan_folder(root, spatial_dims)
    if len(samples) < 3:
        raise DataError(root / "images", f"has {len(samples)} image(s); need at least 3 to split")
    split = SplitParams()  # the DVC prepare stage's defaults: one place for both
    idx = split_indices(len(samples), split.fractions, seed=split.seed)
    jobs = [
        FileJob(samples[i].stem, name, samples[i], spatial_dims, in_channels)
        for name, rows in idx.items()
        for i in rows.tolist()
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out.parent))
    try:
        cases = run_jobs(jobs, str(staging), workers or default_workers())
        write_manifest(staging, cases, meta={"source": "folder", "folder": str(root)})
        try:
            staging.rename(out)  # nothing half-written ever appears at `out`
        except OSError:
            if not (out / MANIFEST).exists():  # lost a race to an identical writer: fine
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    counts = {k: len(v) for k, v in idx.items()}
    print(f"prepared folder {root} ({sum(counts.values())} images {counts}) into {out}", flush=True)


def resolve_data(
    project_dir: Path, data_path: str, spatial_dims: int, in_channels: int
) -> tuple[Path | str, str | None]:
    """The prepared data set for `data.path`, and its data version when known here.

    Returns:
        `(prepared folder, None)` when `data.path` is a prepared folder (the caller's
        data version stands), `(URI, "manifest-<hash>")` for a prepared set in object
        storage (workers read it there), or `(prepared folder, "folder-<hash>")` for a
        raw folder.

    Raises:
        DataError: `data.path` is neither prepared nor an `images/` + `masks/` folder,
            or its files are unreadable or inconsistent.
    """
    if is_remote(data_path):
        manifest = read_manifest(data_path)  # fails here, with the URI, not in a worker
        return data_path.rstrip("/"), f"{MANIFEST_VERSION}{manifest.version()[:16]}"
    path = (project_dir / data_path).resolve()
    if not is_raw_folder(path):
        if not (path / MANIFEST).exists() and path.is_dir() and any(path.iterdir()):
            raise DataError(
                path,
                "data.path holds neither manifest.json nor images/ + masks/; "
                "point it at a prepared data set or a folder with images/ and masks/",
            )
        return path, None
    digest = folder_hash(path, spatial_dims, in_channels)
    out = project_dir.resolve() / PREPARED_ROOT / digest
    if not (out / MANIFEST).exists():
        prepare_folder(path, out, spatial_dims, in_channels)
    return out, f"{FOLDER_VERSION}{digest}"
