"""Where Ray Train puts checkpoints: a local folder or any S3-compatible bucket."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.fs


def s3_endpoint() -> str | None:
    """The S3 endpoint from the standard AWS variables (None: AWS itself)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def ray_storage(storage_path: str) -> tuple[str, pyarrow.fs.FileSystem | None]:
    """Translate `storage_path` into Ray's (path, filesystem) pair.

    `s3://bucket/prefix` with a custom endpoint (MinIO, Ceph, moto) needs an explicit
    pyarrow filesystem; credentials come from the environment or AWS profiles, never
    from configuration files.
    """
    if not storage_path.startswith("s3://"):
        return str(Path(storage_path).resolve()), None
    endpoint = s3_endpoint()
    if endpoint is None:
        return storage_path, None
    scheme, _, host = endpoint.partition("://")
    fs = pyarrow.fs.S3FileSystem(
        endpoint_override=host or scheme,
        scheme=scheme if host else "https",
        region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    )
    return storage_path.removeprefix("s3://"), fs
