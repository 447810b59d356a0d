"""Patches streamed from a prepared data set: each training process reads only its own.

`PatchStream` is an ``IterableDataset``: every (rank, DataLoader worker) draws its own
patches from its own generator, seeded by ``(seed, epoch, rank, worker)``, and reads
only the chunks those patches cover, from a local folder or straight from object
storage. A process holds at most its `CaseCache` (a byte-bounded LRU of small decoded
cases) plus the batch being built, whatever the size of the data set. With a
`NodeCache`, a remote case is downloaded once per node into a shared local folder and
every process of the node reads it from there.

Example:
    >>> stream = PatchStream("s3://bucket/prep", "train", (64, 64, 64), samples=256,
    ...                      rank=rank, world_size=world)
    >>> loader = DataLoader(stream, batch_size=2)
    >>> stream.set_epoch(epoch)  # new patches each epoch, the same on a rerun
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from unet_core.data.node_cache import NodeCache
from unet_core.data.normalization import Normalization, normalize_image
from unet_core.data.manifest import Case
from unet_core.data.prepared import PreparedStore, case_stats, normalization_for

Item = tuple[torch.Tensor, torch.Tensor]
Window = tuple[slice, ...]

# nnU-Net's default: a third of the patches are centred on foreground, so rare small
# structures are seen every few batches, while two thirds stay random and keep the
# model calibrated on the background it sees at inference time.
FOREGROUND_FRACTION = 1 / 3


class CaseCache:
    """A byte-bounded LRU of whole decoded cases, for this process only.

    A case of at most a quarter of the budget is read once and patches are cut from
    memory; a larger case is never held whole: each patch reads only its chunks.

    Args:
        store: the prepared data set.
        max_bytes: budget of decoded image + mask bytes held at once.
    """

    def __init__(self, store: PreparedStore, max_bytes: int) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.held: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.bytes = 0

    def _case_bytes(self, case: Case) -> int:
        voxels = math.prod(case.shape)
        return voxels * (self.store.manifest.in_channels * np.dtype(case.dtype).itemsize + 1)

    def read(self, case: Case, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """``(image [C, *w], mask [*w])`` of ``window`` in ``case``."""
        size = self._case_bytes(case)
        if size > self.max_bytes // 4:
            return self.store.read(case.stem, window)
        if case.stem in self.held:
            self.held.move_to_end(case.stem)
        else:
            while self.held and self.bytes + size > self.max_bytes:
                _, (image, mask) = self.held.popitem(last=False)
                self.bytes -= image.nbytes + mask.nbytes
            self.held[case.stem] = self.store.load_case(case.stem)
            self.bytes += size
        image, mask = self.held[case.stem]
        return image[(slice(None), *window)], mask[window]


class PatchStream(IterableDataset[Item]):
    """Random fixed-size patches of one split, oversampling foreground.

    With probability ``foreground_fraction`` a patch is centred (up to the border) on a
    foreground voxel from the manifest's per-label sample (label drawn uniformly among
    the case's labels, so rare classes get their share); otherwise its position is
    uniform. Axes shorter than the patch are zero-padded (after normalisation, so the
    padding is the train mean), split evenly on both sides.

    Args:
        root: prepared data set, folder or URI; each process opens it itself.
        split: usually ``"train"``.
        patch_size: ``(h, w)`` or ``(d, h, w)``.
        samples: patches per epoch for this rank (split among DataLoader workers);
            None: one per case of the split over all ranks (rounded up).
        foreground_fraction: chance of a foreground-centred patch.
        seed: base seed; patches depend only on ``(seed, epoch, rank, worker)``.
        rank, world_size: this process's place among data-parallel ranks.
        cache_mb: `CaseCache` budget per DataLoader worker process.
        options: fsspec storage options (None: endpoint from the environment).
        normalization: intensity normalisation (None: the train split's mean/std); in
            ``per_image`` mode a patch takes its whole case's statistics.
        node_cache: disk cache of remote cases shared by the node's processes (None:
            every read goes to storage); a local ``root`` is read in place.
    """

    def __init__(
        self,
        root: str,
        split: str,
        patch_size: Sequence[int],
        samples: int | None = None,
        foreground_fraction: float = FOREGROUND_FRACTION,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        cache_mb: float = 256,
        options: dict | None = None,
        normalization: Normalization | None = None,
        node_cache: NodeCache | None = None,
    ) -> None:
        if not 0.0 <= foreground_fraction <= 1.0:
            raise ValueError(f"foreground_fraction must be in [0, 1], got {foreground_fraction}")
        self.store = PreparedStore(root, options, node_cache)
        self.norm = normalization_for(self.store.manifest, normalization)
        self.cases = [self.store.case(s) for s in self.store.manifest.stems(split)]
        if not self.cases:
            raise ValueError(f"split {split!r} of {self.store.root} has no cases to draw from")
        if len(patch_size) != self.store.manifest.spatial_dims or min(patch_size) < 1:
            raise ValueError(
                f"patch_size {tuple(patch_size)} needs {self.store.manifest.spatial_dims} "
                "positive sizes"
            )
        self.patch_size = tuple(int(p) for p in patch_size)
        self.samples = samples if samples is not None else -(-len(self.cases) // world_size)
        self.foreground_fraction = foreground_fraction
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.cache_bytes = int(cache_mb * 2**20)
        self.epoch = 0
        self._cache: CaseCache | None = None

    def set_epoch(self, epoch: int) -> None:
        """Draw different patches in each epoch (call before iterating)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.samples

    def __getstate__(self) -> dict:
        # DataLoader workers get a copy without the parent's cache; each builds its own.
        return {**self.__dict__, "_cache": None}

    def __iter__(self) -> Iterator[Item]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if self._cache is None:
            self._cache = CaseCache(self.store, self.cache_bytes)
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker])
        for _ in range(worker, self.samples, workers):
            yield self.draw(rng)

    def draw(self, rng: np.random.Generator) -> Item:
        """One patch: ``(image float32 [C, *patch], mask int64 [*patch])``."""
        case = self.cases[int(rng.integers(len(self.cases)))]
        start = self._start(rng, case)
        low = [max(s, 0) for s in start]
        high = [min(s + p, n) for s, p, n in zip(start, self.patch_size, case.shape, strict=True)]
        window = tuple(slice(a, b) for a, b in zip(low, high, strict=True))
        cache = self._cache or CaseCache(self.store, self.cache_bytes)
        image, mask = cache.read(case, window)
        own = case_stats(case) if self.norm.mode == "per_image" else None
        image = normalize_image(np.asarray(image), self.norm, own)
        pad = [
            (a - s, s + p - b) for s, a, b, p in zip(start, low, high, self.patch_size, strict=True)
        ]
        if any(before or after for before, after in pad):
            image = np.pad(image, [(0, 0), *pad])
            mask = np.pad(mask, pad)
        return torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(
            mask.astype(np.int64)
        )

    def _start(self, rng: np.random.Generator, case: Case) -> list[int]:
        """Patch corner in case coordinates; negative where the case is smaller (padding)."""
        sizes, patch = case.shape, self.patch_size
        # The range of corners keeping the patch inside; one centred corner on short axes.
        lowest = [min(0, -((p - s) // 2)) for s, p in zip(sizes, patch, strict=True)]
        highest = [max(s - p, low) for s, p, low in zip(sizes, patch, lowest, strict=True)]
        if rng.random() < self.foreground_fraction and case.foreground:
            label = sorted(case.foreground)[int(rng.integers(len(case.foreground)))]
            points = case.foreground[label]
            centre = points[int(rng.integers(len(points)))]
            return [
                min(max(c - p // 2, lo), hi)
                for c, p, lo, hi in zip(centre, patch, lowest, highest, strict=True)
            ]
        return [int(rng.integers(lo, hi + 1)) for lo, hi in zip(lowest, highest, strict=True)]
