"""A disk cache of remote cases on the node's local disk, shared by all its processes.

Every Ray Train worker and every DataLoader worker on a node opens the same folder, so a
case crosses the network once per node, not once per process. Design:

- Key: the case's content sha256 from the manifest. Content never changes under a key (a
  changed case gets a new sha256, hence a new file), so there is nothing to invalidate;
  two data versions that share cases share their files.
- One file per case (``<sha256>.zip``, a zarr ZIP store holding ``image/`` and ``mask/``).
  A reader keeps the file open, so when another process evicts it (unlinks it) the reader
  goes on reading its open inode: POSIX frees the blocks at the last close. A folder of
  chunk files would not survive that: a chunk missing mid-read reads as zeros in zarr.
- Fill: download into ``.tmp-<key>-<pid>-<random>``, verify (the caller's check: the
  content hash), then ``os.replace`` onto the final name, which is atomic on one file
  system. No reader ever opens a temp name, so a partial or corrupt download is never
  used; temp files of dead fillers are removed once they are an hour old. A per-key
  ``flock`` lets one process download while the others on the node wait and then hit; if
  a lock is lost (its file was evicted) two processes download the same case and the
  second rename replaces an identical file: wasteful, never wrong.
- Bound: finished files stay within ``max_bytes``. Eviction and the rename run under one
  folder-wide ``flock``, least recently used first (mtime, touched on every open). A case
  larger than a quarter of the budget is not cached (it would evict most of the others at
  every read); it streams its chunks from storage. Downloads in flight add at most one
  case per filling process on top of the bound, and an evicted file a process still
  holds open keeps its blocks until that process next uses it (`PreparedStore` then
  drops the handle) or its handle ages out (at most ``prepared.CACHED_HANDLES`` arrays a process).

Example:
    >>> cache = NodeCache(None, max_bytes=20 * 2**30)  # <tmp>/unetflow-node-cache-<uid>
    >>> path = cache.lookup(case.sha256) or cache.fill(case.sha256, size, download)
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
from stat import S_ISDIR
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from unet_core.data.errors import DataError

# 20 GB: a few hundred compressed CT volumes, or a whole 2D tile set of tens of GB at
# about 3x compression; a small share of the local NVMe of a cloud GPU node (hundreds of
# GB to a few TB), so checkpoints and Ray's spill folder keep their room. Raise it on
# nodes whose disk can hold the whole training split: then every case is read once.
DEFAULT_NODE_CACHE_GB = 20.0
SUFFIX = ".zip"
TMP = ".tmp-"
STALE_TMP_S = 3600.0  # a temp file this old belongs to a filler that died
ADMIT_FRACTION = 4  # cache cases up to max_bytes / 4
_KEY = re.compile(r"[0-9a-f]{64}")  # a sha256: also keeps manifest text out of paths
# The only names the cache ever deletes: a folder shared with other files (a user's
# data.node_cache_dir: /local_nvme) keeps them, whatever their names.
_OWN_FILE = re.compile(rf"{_KEY.pattern}{re.escape(SUFFIX)}")
_OWN_TMP = re.compile(rf"{re.escape(TMP)}{_KEY.pattern}-.*")
DOWNLOAD_BATCH = 32  # objects fetched concurrently (and held in memory) per request batch


def default_node_cache_dir() -> Path:
    """``<system temp>/unetflow-node-cache-<uid>``, resolved on the node that reads."""
    return Path(tempfile.gettempdir()) / f"unetflow-node-cache-{os.getuid()}"


class NodeCache:
    """A byte-bounded, content-addressed disk cache shared by the processes of a node.

    Args:
        folder: local folder (None: `default_node_cache_dir` of the node it runs on).
        max_bytes: bound on the finished files' bytes.

    Attributes:
        hits, misses: lookups of this process served from disk / downloaded by it.
    """

    def __init__(self, folder: str | Path | None, max_bytes: int) -> None:
        self.folder = Path(folder) if folder else None
        self.max_bytes = int(max_bytes)
        self.hits = 0
        self.misses = 0

    @property
    def root(self) -> Path:
        return self.folder or default_node_cache_dir()

    def admits(self, key: str, size: int) -> bool:
        """Whether a case of ``size`` bytes under ``key`` is cached at all."""
        return bool(_KEY.fullmatch(key)) and 0 < size <= self.max_bytes // ADMIT_FRACTION

    def path(self, key: str) -> Path:
        return self.root / f"{key}{SUFFIX}"

    def lookup(self, key: str) -> Path | None:
        """The cached file of ``key`` (marked recently used), or None."""
        if not self.touch(key):
            return None
        self.hits += 1
        return self.path(key)

    def touch(self, key: str) -> bool:
        """Mark ``key`` recently used; False when it is not (or no longer) cached.

        The mtime is the LRU clock: eviction goes by it, so a reader touches a file on
        every use, not only when it opens it."""
        if not _KEY.fullmatch(key):
            return False
        try:
            os.utime(self.path(key))
        except FileNotFoundError:
            return False
        return True

    def fill(self, key: str, size: int, write: Callable[[Path], None]) -> Path:
        """Download ``key`` with ``write(temp_path)`` (which must raise on bad content)
        and publish it; if another process published it meanwhile, use theirs."""
        self._ensure_root()
        with _flock(self.root / f"{key}.lock"):
            found = self.lookup(key)
            if found is not None:
                return found
            tmp = self.root / f"{TMP}{key}-{os.getpid()}-{secrets.token_hex(4)}"
            try:
                write(tmp)
                with _flock(self.root / ".evict.lock"):
                    self._evict(tmp.stat().st_size)
                    os.replace(tmp, self.path(key))
            finally:
                tmp.unlink(missing_ok=True)
        self.misses += 1
        return self.path(key)

    def entries(self) -> list[os.stat_result]:
        """Stats of the finished files (for tests and reports)."""
        return [s for _, s in self._scan()] if self.root.is_dir() else []

    def _ensure_root(self) -> None:
        root = self.root
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Files here are trusted without re-hashing: refuse a folder others control, and
        # in the shared temp dir a link planted in its place (it could point anywhere).
        stat = root.stat() if self.folder else root.lstat()
        if stat.st_uid != os.getuid() or not S_ISDIR(stat.st_mode):
            raise DataError(
                root,
                "node cache folder is not a folder of this user (another owner, or a "
                "link in the temp dir); set data.node_cache_dir to a folder of your own",
            )

    def _scan(self) -> list[tuple[Path, os.stat_result]]:
        found = []
        now = time.time()
        for entry in os.scandir(self.root):
            try:
                stat = entry.stat()
            except FileNotFoundError:  # evicted by another process meanwhile
                continue
            if _OWN_FILE.fullmatch(entry.name):
                found.append((Path(entry.path), stat))
            elif _OWN_TMP.fullmatch(entry.name) and now - stat.st_mtime > STALE_TMP_S:
                Path(entry.path).unlink(missing_ok=True)
        return found

    def _evict(self, incoming: int) -> None:
        """Unlink least recently used files until ``incoming`` more bytes fit the bound.

        A process reading an evicted file keeps its open descriptor and reads on."""
        files = sorted(self._scan(), key=lambda item: item[1].st_mtime)
        total = sum(stat.st_size for _, stat in files) + incoming
        for path, stat in files:
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            path.with_suffix(".lock").unlink(missing_ok=True)
            total -= stat.st_size


@contextmanager
def _flock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if missing), for this block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def cached_array(
    cache: NodeCache,
    key: str,
    name: str,
    remote: tuple[Any, str],
    check: Callable[[Any], None],
    where: str,
) -> Any | None:
    """The zarr array ``name`` of the case stored under ``key``, from the node cache.

    On a miss the case's folder ``remote = (fsspec filesystem, path)`` is downloaded and
    ``check(zip_store)`` must accept it (raise `DataError` otherwise) before any process
    may read it. Returns None for a case too large to cache (read it from storage).

    Raises:
        DataError: storage failed (named by ``where``) or ``check`` refused the content.
        OSError: the local disk failed (full, unwritable): the caller may read remotely.
    """
    import zarr
    from zarr.storage import ZipStore

    if not _KEY.fullmatch(key):  # not a sha256 (nothing to key on): read from storage
        return None
    for _ in range(2):  # a file evicted between lookup and open is filled again
        path = cache.lookup(key)
        if path is None:
            fs, folder = remote
            files = _remote_files(fs, folder, where)
            size = sum(files.values())
            if not cache.admits(key, size):
                return None

            def write(tmp: Path, fs: Any = fs, folder: str = folder, files: Any = files) -> None:
                _download_zip(fs, folder, files, tmp, where)
                with ZipStore(tmp, mode="r") as zipped:
                    check(zipped)

            path = cache.fill(key, size, write)
        try:
            return zarr.open_array(store=ZipStore(path, mode="r"), path=name, mode="r")
        except FileNotFoundError:
            continue
    raise DataError(cache.path(key), "evicted twice while opening; raise data.node_cache_gb")


def _remote_files(fs: Any, folder: str, where: str) -> dict[str, int]:
    """Object path -> size of everything under a remote folder (one listing)."""
    try:
        found = fs.find(folder, detail=True)
    except Exception as err:  # a failed request: storage's problem, not the disk's
        raise DataError(where, f"cannot list case ({type(err).__name__}: {err})") from err
    if not found:
        raise DataError(where, "case not found in storage")
    return {path: int(info["size"]) for path, info in found.items()}


def _download_zip(fs: Any, folder: str, files: dict[str, int], dest: Path, where: str) -> None:
    """Write the objects under ``folder`` into a ZIP at ``dest``, named relative to it.

    Objects are fetched a batch at a time (concurrently by async file systems such as
    s3fs) and stored uncompressed: zarr chunks are compressed already. Storage errors
    raise `DataError`; local write errors stay `OSError`."""
    import zipfile

    names = sorted(files)
    prefix = folder.rstrip("/") + "/"
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for start in range(0, len(names), DOWNLOAD_BATCH):
            batch = names[start : start + DOWNLOAD_BATCH]
            try:
                blobs = fs.cat(batch, on_error="raise")
            except Exception as err:
                problem = f"cannot download case ({type(err).__name__}: {err})"
                raise DataError(where, problem) from err
            for name in batch:
                archive.writestr(name.removeprefix(prefix), blobs[name])
