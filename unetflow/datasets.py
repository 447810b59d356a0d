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
from pathlib import Path

from unet_core.data import DataError, scan_folder
from unet_core.data.prepared import MANIFEST
from unetflow.data_params import DataParams
from unetflow.prepare import prepare

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
        json.dumps(
            [
                _FORMAT,
                spatial_dims,
                in_channels,
                _params(root, spatial_dims).model_dump(mode="json"),
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


def _params(root: Path, spatial_dims: int) -> DataParams:
    # The DVC prepare stage's defaults (split fractions and seed, shard size) for a folder.
    return DataParams(source="folder", folder=str(root), spatial_dims=spatial_dims)


def prepare_folder(root: Path, out: Path, spatial_dims: int, in_channels: int) -> None:
    """Prepare `root` at `out` with the DVC `prepare` stage's own code and defaults."""
    samples = scan_folder(root, spatial_dims)
    if len(samples) < 3:
        raise DataError(root / "images", f"has {len(samples)} image(s); need at least 3 to split")
    prepare(_params(root, spatial_dims), out, in_channels=in_channels)


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
