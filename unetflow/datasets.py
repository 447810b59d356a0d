"""Training data as the config names it: a prepared folder, or raw `images/` + `masks/`.

`data.path` may point at a prepared data set (manifest.json + shards, what DVC's
`prepare` stage writes) or at a plain folder of image/mask pairs. A plain folder is
prepared on the fly into `<project>/.unetflow/prepared/<hash>`, where the hash covers
the files' bytes and the preparation settings: an unchanged folder is prepared once,
and any edit to it yields a new prepared set (and a new data version, so a new run).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from unet_core.data import DataError, load_pair, scan_folder, split_indices, write_prepared
from unet_core.data.prepared import MANIFEST

# The split used for folder data sets; the same defaults as the DVC prepare stage.
FOLDER_SPLIT = (0.7, 0.15, 0.15)
FOLDER_SPLIT_SEED = 42
PREPARED_ROOT = Path(".unetflow") / "prepared"
_FORMAT = "folder-v1"  # bump when the preparation below changes what it writes
FOLDER_VERSION = "folder-"  # data version of a raw folder: this prefix + its content hash


def is_raw_folder(path: Path) -> bool:
    """True for a folder with `images/` and `masks/` and no manifest."""
    return (
        (path / "images").is_dir() and (path / "masks").is_dir() and not (path / MANIFEST).exists()
    )


def folder_hash(root: Path, spatial_dims: int, in_channels: int) -> str:
    """A short hash of every image and mask file (names and bytes) and the settings."""
    digest = hashlib.sha256(
        json.dumps([_FORMAT, spatial_dims, in_channels, FOLDER_SPLIT, FOLDER_SPLIT_SEED]).encode()
    )
    for sample in scan_folder(root, spatial_dims):
        for path in (sample.image_path, sample.mask_path):
            digest.update(f"{path.parent.name}/{path.name}\0".encode())
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def prepare_folder(root: Path, out: Path, spatial_dims: int, in_channels: int) -> None:
    """Read, check, split and write `root` as shards at `out` (atomically)."""
    samples = scan_folder(root, spatial_dims)
    if len(samples) < 3:
        raise DataError(root / "images", f"has {len(samples)} image(s); need at least 3 to split")
    pairs = [load_pair(s, spatial_dims, in_channels) for s in samples]
    shapes = sorted({p[0].shape for p in pairs})
    if len(shapes) > 1:
        raise DataError(
            root / "images",
            f"images have different shapes {shapes[:3]}; resample them to one shape first",
        )
    images, masks = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    idx = split_indices(len(samples), FOLDER_SPLIT, seed=FOLDER_SPLIT_SEED)
    splits = {k: (images[i], masks[i], [samples[j].stem for j in i]) for k, i in idx.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out.parent))
    try:
        write_prepared(staging, splits, meta={"source": "folder", "folder": str(root)})
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
) -> tuple[Path, str | None]:
    """The prepared data folder for `data.path`, and the data version if it was prepared here.

    Returns:
        `(prepared folder, None)` when `data.path` is already prepared (the caller's
        data version stands), or `(prepared folder, "folder-<hash>")` for a raw folder.

    Raises:
        DataError: `data.path` is neither prepared nor an `images/` + `masks/` folder,
            or its files are unreadable or inconsistent.
    """
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
