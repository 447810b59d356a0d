"""The prepared format: one chunked, compressed zarr v3 array per case plus a manifest.

Layout of a prepared data set, in a local folder or under ``s3://bucket/prefix``::

    manifest.json                 # `Manifest`: cases, splits, shapes, spacing, statistics
    cases/<stem>.zarr/image/      # [C, *spatial], the source's own dtype, chunked
    cases/<stem>.zarr/mask/       # [*spatial] uint8 label map, same spatial chunks

Each case keeps its own shape, voxel spacing and affine. A reader fetches only the
chunks it slices (``store.image(stem)[:, z0:z1, y0:y1, x0:x1]``), so a training worker
streams patches straight from object storage and never holds the data set in memory.
Chunks carry a crc32c checksum (a corrupt chunk fails on read) and the manifest holds
each case's content sha256, so the manifest's own hash is the data version.

The manifest's schema lives in `manifest`, writing in `prepared_write`; this module
reads the arrays.

Example:
    >>> store = PreparedStore("s3://bucket/prepared")
    >>> stem = store.manifest.stems("train")[0]
    >>> patch = store.image(stem)[:, 0:64, 0:64]  # only the chunks of this window
"""

from __future__ import annotations

import functools
import warnings
from collections import OrderedDict
from typing import Any

import numpy as np

from unet_core.data import store as st
from unet_core.data.errors import DataError
from unet_core.data.manifest import (
    REPREPARE,
    Case,
    Manifest,
    case_dir,
    content_sha256,
    read_manifest,
)
from unet_core.data.node_cache import NodeCache, cached_array
from unet_core.data.normalization import Normalization, normalize_batch, normalize_image

OPEN_HANDLES = 1024  # array handles a store keeps open (metadata only, no voxels)
# With a node cache each handle holds its case's file open (one descriptor, and the
# disk blocks of a file evicted meanwhile): few, far below ulimit and the disk bound.
CACHED_HANDLES = 32


class PreparedStore:
    """Read access to a prepared data set; arrays open lazily and fetch chunks on slicing.

    Args:
        root: local folder or URI (``s3://bucket/prefix``).
        options: fsspec storage options for a URI, e.g.
            ``{"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}``; None takes
            the endpoint from ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``.
        node_cache: disk cache of remote cases shared by the node's processes: a case
            is downloaded into it whole, checked against its sha256, and read from
            there (None, or a local ``root``: every read goes to ``root``).
    """

    def __init__(
        self,
        root: st.Location,
        options: st.StorageOptions = None,
        node_cache: NodeCache | None = None,
    ) -> None:
        self.root = st.normalise(root)
        self.options = st.resolve_options(self.root, options)
        self.manifest = read_manifest(self.root, self.options)
        self._cases = {case.stem: case for case in self.manifest.cases}
        self._handles: OrderedDict[tuple[str, str], Any] = OrderedDict()
        # A local folder is read in place: a node cache would only copy it.
        self.node_cache = node_cache if st.is_remote(self.root) else None
        # A cached case's handle holds its file open (one descriptor per array).
        self._max_handles = OPEN_HANDLES if self.node_cache is None else CACHED_HANDLES
        self._uncacheable: set[str] = set()

    def __getstate__(self) -> dict:
        # Array handles hold event-loop state: each process opens its own.
        return {**self.__dict__, "_handles": OrderedDict()}

    def _open(self, stem: str, name: str) -> Any:
        # Opening reads the array's metadata (a request on S3, ~10 ms locally): keep the
        # most recent handles, not the data, so a case's chunks cost one request each.
        key = (stem, name)
        if key in self._handles and self._still_cached(stem):
            self._handles.move_to_end(key)
            return self._handles[key]
        self._handles.pop(key, None)  # an evicted case's handle: reopen it (refill)
        import zarr

        where = st.join(case_dir(self.root, stem), name)
        handle = self._cached(stem, name)
        if handle is None:
            try:
                if self.options is None:
                    handle = zarr.open_array(store=where, mode="r")
                else:
                    handle = zarr.open_array(store=where, mode="r", storage_options=self.options)
            except Exception as err:  # missing or unreadable metadata: name the array
                problem = f"cannot open array ({type(err).__name__}: {err})"
                raise DataError(where, problem) from err
        self._handles[key] = handle
        if len(self._handles) > self._max_handles:
            self._handles.popitem(last=False)
        return handle

    def _still_cached(self, stem: str) -> bool:
        """Touch a node-cached case (its mtime is the cache's LRU clock); False when
        another process evicted it: the handle then holds a deleted file's blocks, so
        the caller reopens (refills) rather than keep the disk beyond the bound."""
        if self.node_cache is None or stem in self._uncacheable:
            return True  # read from storage or in place: nothing to touch
        return self.node_cache.touch(self.case(stem).sha256)

    def _cached(self, stem: str, name: str) -> Any:
        """The array from the node cache (filled on a miss), or None when not cached."""
        if self.node_cache is None or stem in self._uncacheable:
            return None
        where = case_dir(self.root, stem)
        remote = st.filesystem(where, self.options)
        check = functools.partial(self._check_download, stem)
        key = self.case(stem).sha256
        try:
            handle = cached_array(self.node_cache, key, name, remote, check, where)
        except OSError as err:  # the local disk, not the data: read from storage instead
            warnings.warn(
                f"node cache {self.node_cache.root} unusable ({type(err).__name__}: {err}); "
                f"reading {self.root} from storage (set data.node_cache_dir to a writable "
                "local folder, or data.node_cache_gb: 0)",
                stacklevel=2,
            )
            self.node_cache = None
            return None
        if handle is None:
            self._uncacheable.add(stem)
        return handle

    def _check_download(self, stem: str, zipped: Any) -> None:
        """A downloaded case holds what the manifest says it holds (content sha256)."""
        import zarr

        where = case_dir(self.root, stem)
        try:
            image = zarr.open_array(store=zipped, path="image", mode="r")
            mask = zarr.open_array(store=zipped, path="mask", mode="r")
            found = content_sha256(image, mask)  # streamed: one chunk row in memory
        except Exception as err:  # a chunk failing its crc32c, a truncated object
            problem = f"cannot read downloaded case ({type(err).__name__}: {err}); {REPREPARE}"
            raise DataError(where, problem) from err
        if found != self.case(stem).sha256:
            problem = f"downloaded content differs from the manifest's sha256; {REPREPARE}"
            raise DataError(where, problem)

    def case(self, stem: str) -> Case:
        """The manifest record of ``stem`` (constant time)."""
        if stem not in self._cases:
            raise KeyError(f"no case {stem!r} in {self.root}")
        return self._cases[stem]

    def image(self, stem: str) -> Any:
        """The zarr array ``[C, *spatial]`` of a case (native dtype)."""
        return self._open(stem, "image")

    def mask(self, stem: str) -> Any:
        """The zarr array ``[*spatial]`` uint8 of a case."""
        return self._open(stem, "mask")

    def read(
        self, stem: str, window: tuple[slice, ...] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(image [C, *w], mask [*w])`` of a window (None: the whole case)."""
        window = window or (slice(None),) * self.manifest.spatial_dims
        try:
            return self.image(stem)[(slice(None), *window)], self.mask(stem)[window]
        except DataError:
            raise
        except Exception as err:  # a chunk failing its crc32c, a truncated object
            where = case_dir(self.root, stem)
            problem = f"cannot read case ({type(err).__name__}: {err}); {REPREPARE}"
            raise DataError(where, problem) from err

    def load_case(self, stem: str, verify: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """A whole case; with ``verify`` its content hash is checked against the manifest."""
        image, mask = self.read(stem)
        if verify:
            expected = self.case(stem).sha256
            if content_sha256(image, mask) != expected:
                raise DataError(
                    case_dir(self.root, stem),
                    f"content sha256 differs from the manifest ({expected[:12]}...): the case "
                    f"changed after preparation; {REPREPARE} or `dvc pull`",
                )
        return image, mask


def verify_cases(
    root: st.Location, split: str | None = None, options: st.StorageOptions = None
) -> None:
    """Check the content sha256 of every case (of ``split``, or all) against the manifest.

    Raises:
        DataError: a missing case, or one whose contents changed since it was written.
    """
    data = PreparedStore(root, options)
    stems = data.manifest.stems(split) if split else [c.stem for c in data.manifest.cases]
    for stem in stems:
        data.load_case(stem, verify=True)


def normalization_for(manifest: Manifest, norm: Normalization | None = None) -> Normalization:
    """``norm`` (default: dataset mode) with the train split's mean/std filled in where
    its mode takes them from the data."""
    norm = norm or Normalization()
    if norm.mode == "dataset" and (norm.mean is None or norm.std is None):
        return norm.model_copy(update={"mean": manifest.mean, "std": manifest.std})
    return norm


def case_stats(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(mean, std)`` of a whole case from its manifest sums (no read)."""
    count = max(case.stats.count, 1)
    mean = np.asarray(case.stats.sum, dtype=np.float64) / count
    sq = np.asarray(case.stats.sum_sq, dtype=np.float64) / count
    return mean, np.sqrt(np.maximum(sq - mean**2, 0.0))


def normalize(
    images: np.ndarray, manifest: Manifest, norm: Normalization | None = None
) -> np.ndarray:
    """Normalised float32 images ``[C, *spatial]`` or ``[N, C, *spatial]`` (whole
    images); ``norm`` defaults to the train split's mean/std."""
    norm = normalization_for(manifest, norm)
    if images.ndim == manifest.spatial_dims + 1:
        return normalize_image(images, norm)
    return normalize_batch(images, norm)


def load_split(
    root: st.Location, split: str, normalize_images: bool = False, verify: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Load a whole split of same-shape cases into memory (small sets, tests, reports).

    Returns:
        ``(images float32 [N, C, *spatial], masks uint8 [N, *spatial])``.
    """
    images, masks, _ = load_split_with_stems(root, split, normalize_images, verify)
    return images, masks


def load_split_with_stems(
    root: st.Location, split: str, normalize_images: bool = False, verify: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """As `load_split`, plus the stems ``[N]`` (unicode).

    Raises:
        DataError: the split's cases differ in shape (read them one by one with
            `PreparedStore.load_case` instead).
    """
    data = PreparedStore(root)
    manifest = data.manifest
    stems = manifest.stems(split)
    shapes = sorted({manifest.case(s).shape for s in stems})
    if len(shapes) > 1:
        raise DataError(
            data.root, f"split {split!r} has cases of shapes {shapes[:3]}; read them one by one"
        )
    pairs = [data.load_case(stem, verify) for stem in stems]
    spatial = shapes[0] if shapes else (0,) * manifest.spatial_dims
    images = np.zeros((len(pairs), manifest.in_channels, *spatial), np.float32)
    masks = np.zeros((len(pairs), *spatial), np.uint8)
    for k, (image, mask) in enumerate(pairs):
        images[k], masks[k] = image, mask
    if normalize_images:
        images = normalize(images, manifest)
    return images, masks, np.asarray(stems, dtype=np.str_)
