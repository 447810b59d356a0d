"""Where a prepared data set lives: a local folder or an object-store URI (``s3://...``).

Everything that reads or writes the prepared format goes through these few helpers, so
the same code runs on a laptop folder and on any S3-compatible endpoint (AWS, MinIO,
Ceph, moto). The endpoint is configuration (``storage_options`` or the standard
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` variables); credentials come from the
environment or AWS profiles and never pass through here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

Location = str | Path
StorageOptions = dict[str, Any] | None


def is_remote(location: Location) -> bool:
    """True for a URI with a scheme (``s3://bucket/prefix``), False for a local path."""
    return "://" in str(location)


def normalise(location: Location) -> str:
    """A local path made absolute, or the URI without a trailing slash."""
    if is_remote(location):
        return str(location).rstrip("/")
    return str(Path(location).resolve())


def join(location: Location, *parts: str) -> str:
    """``location/part/...`` for both paths and URIs."""
    return "/".join([str(location).rstrip("/"), *parts])


def default_options(location: Location) -> StorageOptions:
    """fsspec options for ``location``: the S3 endpoint from the environment, if any."""
    if not str(location).startswith("s3://"):
        return None
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return {"client_kwargs": {"endpoint_url": endpoint}} if endpoint else {}


def resolve_options(location: Location, options: StorageOptions) -> StorageOptions:
    """The options to use: the given ones for a URI, else the environment's; None locally."""
    if not is_remote(location):
        return None
    return options if options is not None else default_options(location)


def filesystem(location: Location, options: StorageOptions = None) -> tuple[Any, str]:
    """``(fsspec filesystem, path inside it)`` for ``location``."""
    import fsspec

    return fsspec.core.url_to_fs(str(location), **(resolve_options(location, options) or {}))


def read_text(location: Location, options: StorageOptions = None) -> str:
    """The text of one file (raises FileNotFoundError when it is missing)."""
    if not is_remote(location):
        return Path(location).read_text()
    fs, path = filesystem(location, options)
    return fs.cat_file(path).decode()


def write_text(location: Location, text: str, options: StorageOptions = None) -> None:
    """Write one file; locally via a temporary sibling and a rename (never half-written).

    An object store writes an object whole or not at all, so no rename is needed there.
    """
    if is_remote(location):
        fs, path = filesystem(location, options)
        fs.pipe_file(path, text.encode())
        return
    local = Path(location)
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(f".{local.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, local)
    finally:
        tmp.unlink(missing_ok=True)


def list_names(location: Location, options: StorageOptions = None) -> list[str]:
    """Names directly under a folder/prefix (empty when it does not exist)."""
    if not is_remote(location):
        folder = Path(location)
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    fs, path = filesystem(location, options)
    try:
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))
    except FileNotFoundError:
        return []


def remove_tree(location: Location, options: StorageOptions = None) -> None:
    """Delete a folder/prefix and everything below it."""
    if not is_remote(location):
        import shutil

        shutil.rmtree(location, ignore_errors=True)
        return
    fs, path = filesystem(location, options)
    fs.rm(path, recursive=True)
