"""Data sets for U-Net training: folders, synthetic data, the prepared shard format.

- Folders: `scan_folder` + `load_pair` (png/tif/npy in 2D, nii/nii.gz/tif/npy in 3D);
  `FolderDataset` wraps them.
- Synthetic: `generate_synthetic(n, shape, seed, **knobs)`, textured blobs, 2D and 3D.
- Prepared: one chunked zarr array per case + a manifest, in a folder or on S3:
  `write_case` (one case, any process) -> `write_manifest`; `write_prepared` for
  in-memory splits; `PreparedStore` reads cases and windows; `read_manifest`,
  `load_split`, `PreparedDataset` (case by case).
- Patches: `PatchStream` streams each rank's own patches from the chunked arrays with
  foreground oversampling; `PatchDataset` crops patches of any in-memory dataset.

Bad input raises `DataError` (a `ValueError`) with a one-line message naming the file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from unet_core.data.errors import DataError
from unet_core.data.folder import (
    EXTENSIONS,
    READERS,
    Sample,
    check_image,
    check_mask,
    load_pair,
    read_array,
    read_geometry,
    scan_folder,
)
from unet_core.data.manifest import Case, Manifest, read_manifest
from unet_core.data.prepared import (
    PreparedStore,
    load_split,
    load_split_with_stems,
    normalize,
    verify_cases,
)
from unet_core.data.prepared_write import write_case, write_manifest, write_prepared
from unet_core.data.split import SPLIT_NAMES, split_indices
from unet_core.data.synthetic import SyntheticConfig, generate_synthetic

if TYPE_CHECKING:
    from unet_core.data.datasets import FolderDataset, PatchDataset, PreparedDataset
    from unet_core.data.streaming import PatchStream

_TORCH_DATASETS = ("FolderDataset", "PatchDataset", "PreparedDataset")


def __getattr__(name: str):
    # The torch datasets load lazily: the DVC stages use only the numpy half of this
    # package and should not pay torch's import time on every `dvc repro`.
    if name in _TORCH_DATASETS:
        from unet_core.data import datasets

        return getattr(datasets, name)
    if name == "PatchStream":
        from unet_core.data import streaming

        return streaming.PatchStream
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "EXTENSIONS",
    "READERS",
    "SPLIT_NAMES",
    "Case",
    "DataError",
    "FolderDataset",
    "Manifest",
    "PatchDataset",
    "PatchStream",
    "PreparedDataset",
    "PreparedStore",
    "Sample",
    "SyntheticConfig",
    "check_image",
    "check_mask",
    "generate_synthetic",
    "load_pair",
    "load_split",
    "load_split_with_stems",
    "normalize",
    "read_array",
    "read_geometry",
    "read_manifest",
    "scan_folder",
    "split_indices",
    "verify_cases",
    "write_case",
    "write_manifest",
    "write_prepared",
]
