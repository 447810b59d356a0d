"""boto3 helpers for what DVC does not cover: reading a user's raw data from `s3://`.

- `client()`: endpoint from the argument, `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`
  (AWS, MinIO, Ceph, moto alike); credentials only from the environment or AWS profiles;
  botocore's own retries (`standard` or `adaptive` mode).
- `list_objects`, `download_prefix`, `download_file`, `upload_file`: on top of botocore's
  retries, connection failures (endpoint down, connection reset) are retried with
  exponential backoff for up to `RetryPolicy.deadline_s`, so a store that is away for a
  while is survived.
- Downloads go to a temporary sibling, are verified (MD5 from a single-part ETag, the
  multipart ETag recomputed from the part size, or the object's SHA256 checksum) and only
  then renamed, so no partial or corrupt file is ever left under its final name.
- Uploads send a SHA256 checksum (`ChecksumAlgorithm`) that the store verifies; large
  objects go as multipart transfers (`TransferConfig`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from unetflow.errors import UsageError

T = TypeVar("T")
MB = 1024 * 1024


class ChecksumError(RuntimeError):
    """A downloaded object does not match its ETag or checksum."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying when the endpoint cannot be reached."""

    deadline_s: float = 60.0  # give up after this many seconds of failures
    initial_s: float = 0.5  # first backoff; doubles each attempt
    max_backoff_s: float = 8.0
    checksum_attempts: int = 3  # downloads that fail verification before giving up


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str  # without quotes


def parse_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> `("bucket", "some/prefix")`."""
    if not uri.startswith("s3://") or not uri[5:].split("/", 1)[0]:
        raise UsageError(f"{uri!r} is not an S3 URI; write it as s3://BUCKET/PREFIX")
    bucket, _, prefix = uri[5:].partition("/")
    return bucket, prefix


def endpoint_url(explicit: str | None = None) -> str | None:
    """The S3 endpoint: `explicit`, else the standard AWS variables, else AWS itself."""
    return explicit or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def client(
    endpoint: str | None = None, max_attempts: int = 5, mode: str = "standard", pool: int = 10
) -> Any:
    """An S3 client with botocore retries; credentials are resolved by boto3 as usual.

    Args:
        pool: HTTP connections kept open: at least the threads that share the client.
    """
    import boto3

    config = Config(
        retries={"max_attempts": max_attempts, "mode": mode},
        connect_timeout=5,
        read_timeout=60,
        # Checksums only when the operation needs one: S3-compatible stores differ here.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        max_pool_connections=pool,
    )
    return boto3.client("s3", endpoint_url=endpoint_url(endpoint), config=config)


def transfer_config(threshold_mb: int = 64, chunk_mb: int = 16, threads: bool = True) -> Any:
    """Multipart above `threshold_mb`, in `chunk_mb` parts (S3 needs parts >= 5 MiB).

    Args:
        threads: move one object's parts on threads of its own; False moves them in the
            calling thread, for callers that run many transfers on their own threads.
    """
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=threshold_mb * MB,
        multipart_chunksize=max(chunk_mb, 5) * MB,
        use_threads=threads,
    )


def _retryable() -> tuple[type[BaseException], ...]:
    """Failures worth another try: no connection, transfer gave up, torn download."""
    from boto3.exceptions import RetriesExceededError
    from s3transfer.exceptions import RetriesExceededError as TransferRetriesExceeded

    return (
        BotoConnectionError,  # refused, DNS, connect timeout
        HTTPClientError,  # connection closed or reset mid-request, read timeout
        RetriesExceededError,
        TransferRetriesExceeded,
        ChecksumError,
    )


def with_retries(call: Callable[[], T], what: str, policy: RetryPolicy = RetryPolicy()) -> T:
    """Run `call`, retrying connection failures with exponential backoff until the deadline.

    A download that fails its checksum is retried too, `policy.checksum_attempts` times.

    botocore retries each request a few times within seconds; this outer loop survives an
    endpoint that is down for longer (a restarting MinIO, a network blip).
    """
    deadline = time.monotonic() + policy.deadline_s
    delay = policy.initial_s
    attempt, corrupt = 1, 0
    while True:
        try:
            return call()
        except _retryable() as err:
            if isinstance(err, ChecksumError):
                corrupt += 1
                if corrupt >= policy.checksum_attempts:  # not torn in transit: give up
                    raise
            if time.monotonic() + delay > deadline:
                raise ConnectionError(
                    f"{what}: still failing after {attempt} attempts in {policy.deadline_s:.0f}s "
                    f"({type(err).__name__}: {err}); check AWS_ENDPOINT_URL and the network"
                ) from err
            print(f"{what}: {type(err).__name__}, retry {attempt} in {delay:.1f}s", flush=True)
            time.sleep(delay)
            delay = min(delay * 2, policy.max_backoff_s)
            attempt += 1


def list_objects(s3: Any, uri: str, policy: RetryPolicy = RetryPolicy()) -> list[ObjectInfo]:
    """All objects under an `s3://bucket/prefix` (sorted by key)."""
    bucket, prefix = parse_uri(uri)

    def listing() -> list[ObjectInfo]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [
            ObjectInfo(item["Key"], int(item["Size"]), item["ETag"].strip('"'))
            for page in pages
            for item in page.get("Contents", [])
        ]

    try:
        return sorted(with_retries(listing, f"list {uri}", policy), key=lambda o: o.key)
    except ClientError as err:
        raise UsageError(f"cannot list {uri}: {_client_message(err)}") from None


def _client_message(err: ClientError) -> str:
    info = err.response.get("Error", {})
    return f"{info.get('Code', '?')}: {info.get('Message', '')}".strip()


def _file_chunks(path: Path, size: int) -> Iterator[bytes]:
    with path.open("rb") as f:
        yield from iter(lambda: f.read(size), b"")


def _md5(data: Iterator[bytes]) -> hashlib._Hash:
    digest = hashlib.md5(usedforsecurity=False)
    for chunk in data:
        digest.update(chunk)
    return digest


def multipart_etag(path: Path, part_size: int) -> str:
    """The ETag S3 gives a multipart upload: md5 of the parts' md5s, `-<parts>`."""
    digests = [_md5(iter([chunk])).digest() for chunk in _file_chunks(path, part_size)]
    return f"{_md5(iter(digests)).hexdigest()}-{len(digests)}"


def verify_download(s3: Any, bucket: str, key: str, path: Path) -> str:
    """Check a downloaded file against the object; returns how it was checked.

    Raises:
        ChecksumError: the file differs from the object.
    """
    head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    etag = head["ETag"].strip('"')
    if path.stat().st_size != head["ContentLength"]:
        raise ChecksumError(
            f"s3://{bucket}/{key}: size {path.stat().st_size} != {head['ContentLength']}"
        )
    sha = head.get("ChecksumSHA256")
    # A multipart upload's SHA256 may be composite (of the parts' checksums); only a
    # single-part object's, or one typed FULL_OBJECT, is the whole file's.
    full_object = head.get("ChecksumType") == "FULL_OBJECT" or "-" not in etag
    if sha and "-" not in sha and full_object:
        digest = hashlib.sha256()
        for chunk in _file_chunks(path, MB):
            digest.update(chunk)
        got, how = base64.b64encode(digest.digest()).decode(), "sha256"
        expected = sha
    elif "-" not in etag:
        got, how, expected = _md5(_file_chunks(path, MB)).hexdigest(), "md5", etag
    else:  # multipart: part 1's length is the part size the uploader used
        part = s3.head_object(Bucket=bucket, Key=key, PartNumber=1)["ContentLength"]
        got, how, expected = multipart_etag(path, int(part)), "multipart-md5", etag
    if got != expected:
        raise ChecksumError(f"s3://{bucket}/{key}: {how} mismatch ({got} != {expected})")
    return how


def download_file(
    s3: Any,
    bucket: str,
    key: str,
    dest: Path,
    policy: RetryPolicy = RetryPolicy(),
    transfer: Any | None = None,
) -> Path:
    """Download one object to `dest` atomically (temp file, verify, rename).

    Args:
        transfer: a `TransferConfig` (default: `transfer_config()`).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}")

    def fetch() -> None:
        tmp.unlink(missing_ok=True)  # a retry starts over: never resume a torn file
        s3.download_file(bucket, key, str(tmp), Config=transfer or transfer_config())
        verify_download(s3, bucket, key, tmp)

    try:
        with_retries(fetch, f"download s3://{bucket}/{key}", policy)
        os.replace(tmp, dest)
    except ClientError as err:
        raise UsageError(f"cannot download s3://{bucket}/{key}: {_client_message(err)}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def download_prefix(
    uri: str, dest: Path, s3: Any | None = None, policy: RetryPolicy = RetryPolicy()
) -> list[Path]:
    """Mirror every object under `uri` into `dest` (keys relative to the prefix)."""
    s3 = s3 or client()
    bucket, prefix = parse_uri(uri)
    objects = [o for o in list_objects(s3, uri, policy) if not o.key.endswith("/")]
    if not objects:
        raise UsageError(f"{uri} holds no objects; check the bucket and prefix")
    base = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    paths = []
    for k, obj in enumerate(objects, 1):
        rel = obj.key[len(base) :] if obj.key.startswith(base) else Path(obj.key).name
        if ".." in Path(rel).parts:
            raise UsageError(f"s3://{bucket}/{obj.key}: refusing a key that leaves {dest}")
        paths.append(download_file(s3, bucket, obj.key, dest / rel, policy))
        if k % 100 == 0 or k == len(objects):
            print(f"downloaded {k}/{len(objects)} objects from {uri}")
    return paths


def upload_file(
    s3: Any,
    path: Path,
    bucket: str,
    key: str,
    policy: RetryPolicy = RetryPolicy(),
    transfer: Any | None = None,
) -> None:
    """Upload with a SHA256 checksum the store verifies; multipart for large files.

    Args:
        transfer: a `TransferConfig` (default: `transfer_config()`).
    """

    def put() -> None:
        s3.upload_file(
            str(path),
            bucket,
            key,
            ExtraArgs={"ChecksumAlgorithm": "SHA256"},
            Config=transfer or transfer_config(),
        )

    try:
        with_retries(put, f"upload {path} to s3://{bucket}/{key}", policy)
    except ClientError as err:
        raise UsageError(f"cannot upload to s3://{bucket}/{key}: {_client_message(err)}") from None
