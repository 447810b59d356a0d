"""Where Ray Train puts checkpoints: a local folder or any S3-compatible bucket."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.fs

from unetflow.atomic_fs import atomic_local_filesystem


def s3_endpoint() -> str | None:
    """The S3 endpoint from the standard AWS variables (None: AWS itself)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def ray_storage(storage_path: str) -> tuple[str, pyarrow.fs.FileSystem | None]:
    """Translate `storage_path` into Ray's (path, filesystem) pair.

    `s3://bucket/prefix` with a custom endpoint (MinIO, Ceph, moto) needs an explicit
    pyarrow filesystem; credentials come from the environment or AWS profiles, never
    from configuration files. A local folder gets a filesystem whose writes are whole or
    absent: Ray Train and Tune write their run state in place, and a full disk left it
    empty and unresumable.
    """
    if not storage_path.startswith("s3://"):
        return str(Path(storage_path).resolve()), atomic_local_filesystem()
    endpoint = s3_endpoint()
    if endpoint is None:
        return storage_path, None
    scheme, _, host = endpoint.partition("://")
    fs = RetryingS3FileSystem(
        endpoint_override=host or scheme,
        scheme=scheme if host else "https",
        region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    )
    return storage_path.removeprefix("s3://"), fs


# The AWS SDK's default strategy waits 25 ms x 2^attempt between attempts: 11 attempts
# ride out about 25 s of an endpoint being down per request (pyarrow's default: 3).
S3_MAX_ATTEMPTS = 11


class RetryingS3FileSystem(pyarrow.fs.S3FileSystem):
    """An S3 filesystem that retries through an outage, also after Ray pickles it.

    Ray ships the storage filesystem to every worker and to its controller, and pyarrow's
    pickle drops `retry_strategy` (pyarrow 25): the workers uploaded checkpoints with the
    3-attempt default, and an endpoint restart of a few seconds failed the run.
    """

    def __init__(self, **options: object) -> None:
        strategy = pyarrow.fs.AwsDefaultS3RetryStrategy(max_attempts=S3_MAX_ATTEMPTS)
        super().__init__(**options, retry_strategy=strategy)

    def __reduce__(self) -> tuple:
        _, (options,) = super().__reduce__()
        return _retrying_s3, (options,)


def _retrying_s3(options: dict) -> RetryingS3FileSystem:
    return RetryingS3FileSystem(**options)


def is_remote(path: str) -> bool:
    """Whether `path` is a URI (s3://, gs://, ...) rather than a local folder."""
    return "://" in path


def join(root: str, *parts: str) -> str:
    """`root/part/...` that keeps URIs intact.

    `pathlib` collapses the double slash of a URI (`Path("s3://b/x") / "n"` is
    `s3:/b/x/n`), which pyarrow then refuses; URIs are joined as strings.
    """
    if is_remote(root):
        return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(root).joinpath(*parts))


def write_text(path: str, text: str) -> None:
    """Write a small text file to a folder or a bucket; never half-written locally."""
    if not is_remote(path):
        local = Path(path)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_suffix(local.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(local)
        return
    inner, fs = _filesystem(path)
    with fs.open_output_stream(inner) as out:  # an S3 PUT is atomic by itself
        out.write(text.encode())


def read_text(path: str) -> str | None:
    """The text of a small file in a folder or a bucket; None when it does not exist."""
    if not is_remote(path):
        local = Path(path)
        return local.read_text() if local.is_file() else None
    inner, fs = _filesystem(path)
    if fs.get_file_info(inner).type != pyarrow.fs.FileType.File:
        return None
    with fs.open_input_stream(inner) as src:
        return src.read().decode()


def _filesystem(uri: str) -> tuple[str, pyarrow.fs.FileSystem]:
    path, fs = ray_storage(uri)
    if fs is None:
        fs, path = pyarrow.fs.FileSystem.from_uri(uri)
    return path, fs
