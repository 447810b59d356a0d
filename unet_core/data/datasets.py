"""torch datasets over prepared data, folders, and random patches of either.

Every dataset returns ``(image float32 [C, *spatial], mask int64 [*spatial])`` tensors,
the layout `BatchAugmenter`, the losses and the metrics expect after default collation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from unet_core.data.folder import load_pair, scan_folder
from unet_core.data.node_cache import NodeCache
from unet_core.data.normalization import Normalization, normalize_image
from unet_core.data.prepared import PreparedStore, normalization_for
from unet_core.data.streaming import CaseCache

Item = tuple[torch.Tensor, torch.Tensor]


class PreparedDataset(Dataset[Item]):
    """One split of a prepared data set, read case by case (nothing held in memory).

    Args:
        root: folder or URI written by `write_prepared` / `write_case` + `write_manifest`.
        split: ``"train"``, ``"val"`` or ``"test"`` (or any split the manifest lists).
        normalize: apply `normalization` (default: the train split's mean and std).
        verify: check each case's content hash as it is read (raises `DataError`).
        options: fsspec storage options for a URI (None: endpoint from the environment).
        cache_mb: keep recently read cases decoded, up to this many MB (`CaseCache`);
            0 reads every item from storage.
        normalization: intensity normalisation of `normalize` (None: dataset mode).
        node_cache: disk cache of remote cases shared by the node's processes.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        normalize: bool = True,
        verify: bool = False,
        options: dict | None = None,
        cache_mb: float = 0,
        normalization: Normalization | None = None,
        node_cache: NodeCache | None = None,
    ) -> None:
        self.store = PreparedStore(root, options, node_cache)
        self.norm = normalization_for(self.store.manifest, normalization)
        self.cache = CaseCache(self.store, int(cache_mb * 2**20)) if cache_mb else None
        self.manifest = self.store.manifest
        self.stems = self.manifest.stems(split)
        self.normalize = normalize
        self.verify = verify
        if verify:  # fail at construction, as a whole-split load did
            for stem in self.stems:
                self.store.load_case(stem, verify=True)

    def __len__(self) -> int:
        return len(self.stems)

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image [C, *spatial] float32, not normalised, mask uint8 [*spatial])``."""
        stem = self.stems[index]
        if self.cache is not None:
            whole = (slice(None),) * self.manifest.spatial_dims
            image, mask = self.cache.read(self.store.case(stem), whole)
        else:
            image, mask = self.store.load_case(stem)
        return image.astype(np.float32), mask  # a copy: callers may not alter the cache

    def __getitem__(self, index: int) -> Item:
        image, mask = self.raw(index)
        if self.normalize:
            image = normalize_image(image, self.norm)
        return torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(
            mask.astype(np.int64)
        )


class FolderDataset(Dataset[Item]):
    """A folder data set read lazily, one file pair per item (no normalisation).

    Args:
        root: folder with ``images/`` and ``masks/`` (see `scan_folder`).
        spatial_dims: 2 or 3.
        in_channels: expected image channels; ``None`` accepts any.
    """

    def __init__(self, root: str | Path, spatial_dims: int, in_channels: int | None = None) -> None:
        self.samples = scan_folder(root, spatial_dims)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Item:
        image, mask = load_pair(self.samples[index], self.spatial_dims, self.in_channels)
        return torch.from_numpy(image), torch.from_numpy(mask.astype(np.int64))


class PatchDataset(Dataset[Item]):
    """Random fixed-size patches of a dataset's items, oversampling foreground.

    With probability ``foreground_prob`` a patch is centred (up to the image border) on
    a random foreground voxel (mask > 0) of the item; otherwise its position is uniform.
    Items smaller than the patch are zero-padded (image 0 and mask 0 = background) first,
    split evenly on both sides. Patches depend only on ``(seed, epoch, index)``, so
    DataLoader workers and reruns agree; call `set_epoch` to draw new patches.

    Args:
        base: any dataset of ``(image [C, *spatial], mask [*spatial])`` tensors.
        patch_size: ``(h, w)`` or ``(d, h, w)``.
        foreground_prob: chance of a foreground-centred patch.
        samples_per_epoch: length of an epoch; ``None`` = one patch per base item, in
            order; otherwise items are drawn uniformly at random with replacement.
        seed: base seed of every draw.
    """

    def __init__(
        self,
        base: Dataset[Item],
        patch_size: Sequence[int],
        foreground_prob: float = 0.33,
        samples_per_epoch: int | None = None,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= foreground_prob <= 1.0:
            raise ValueError(f"foreground_prob must be in [0, 1], got {foreground_prob}")
        if any(p < 1 for p in patch_size):
            raise ValueError(f"patch_size must be positive, got {tuple(patch_size)}")
        self.base = base
        self.patch_size = tuple(int(p) for p in patch_size)
        self.foreground_prob = foreground_prob
        self.samples_per_epoch = samples_per_epoch
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw different patches in each epoch (call before iterating)."""
        self.epoch = epoch

    def __len__(self) -> int:
        n = self.samples_per_epoch
        return len(self.base) if n is None else n  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Item:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        n_base = len(self.base)  # type: ignore[arg-type]
        item = index if self.samples_per_epoch is None else int(rng.integers(n_base))
        image, mask = self.base[item]
        if mask.ndim != len(self.patch_size):
            raise ValueError(
                f"patch_size {self.patch_size} has {len(self.patch_size)} axes but masks "
                f"have shape {tuple(mask.shape)}"
            )
        image, mask = _pad_to(image, mask, self.patch_size)
        start = self._start(rng, mask)
        window = tuple(slice(s, s + p) for s, p in zip(start, self.patch_size, strict=True))
        return image[(slice(None), *window)], mask[window]

    def _start(self, rng: np.random.Generator, mask: torch.Tensor) -> list[int]:
        """Top-left corner of the patch, foreground-centred with ``foreground_prob``."""
        sizes = mask.shape
        highest = [s - p for s, p in zip(sizes, self.patch_size, strict=True)]
        if rng.random() < self.foreground_prob:
            foreground = torch.nonzero(mask > 0)
            if len(foreground):
                centre = foreground[int(rng.integers(len(foreground)))].tolist()
                return [
                    min(max(c - p // 2, 0), h)
                    for c, p, h in zip(centre, self.patch_size, highest, strict=True)
                ]
        return [int(rng.integers(h + 1)) for h in highest]


def _pad_to(
    image: torch.Tensor, mask: torch.Tensor, size: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad image ``[C, *spatial]`` and mask ``[*spatial]`` up to at least ``size``."""
    missing = [max(p - s, 0) for s, p in zip(mask.shape, size, strict=True)]
    if not any(missing):
        return image, mask
    pad: list[int] = []
    for m in reversed(missing):  # F.pad lists the last axis first
        pad += [m // 2, m - m // 2]
    return F.pad(image, pad), F.pad(mask, pad)
