"""unetflow.s3 against a real moto S3 server over HTTP, with outages from a TCP proxy."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.s3 import OutageProxy, S3Endpoint, s3_server_in_env
from unetflow import s3
from unetflow.errors import UsageError

pytestmark = pytest.mark.integration
FAST = s3.RetryPolicy(deadline_s=20.0, initial_s=0.2, max_backoff_s=1.0)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[S3Endpoint]:
    # Credentials reach unetflow.s3 the way they reach users: from the environment.
    with s3_server_in_env("raw") as server:
        yield server


def _client(url: str) -> object:
    # One botocore attempt: the outer retry loop is what these tests exercise (with more,
    # botocore alone can sometimes outlast a short outage and the loop never runs).
    return s3.client(url, max_attempts=1)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))}


def test_upload_download_roundtrip_single_and_multipart(
    endpoint: S3Endpoint, tmp_path: Path
) -> None:
    cli = _client(endpoint.url)
    small, big = tmp_path / "small.bin", tmp_path / "big.bin"
    small.write_bytes(os.urandom(1000))
    big.write_bytes(os.urandom(11 * s3.MB))
    multipart = s3.transfer_config(threshold_mb=5, chunk_mb=5)
    for path in (small, big):
        s3.upload_file(cli, path, "raw", f"rt/{path.name}", transfer=multipart)
    assert "-" in cli.head_object(Bucket="raw", Key="rt/big.bin")["ETag"]  # really multipart

    got = s3.download_prefix("s3://raw/rt", tmp_path / "down", s3=cli, policy=FAST)
    assert sorted(p.name for p in got) == ["big.bin", "small.bin"]
    assert (tmp_path / "down" / "big.bin").read_bytes() == big.read_bytes()
    assert (tmp_path / "down" / "small.bin").read_bytes() == small.read_bytes()
    assert s3.verify_download(cli, "raw", "rt/big.bin", big) in {"sha256", "multipart-md5"}


def test_verify_download_catches_a_changed_file(endpoint: S3Endpoint, tmp_path: Path) -> None:
    cli = _client(endpoint.url)
    path = tmp_path / "x.bin"
    path.write_bytes(b"a" * 100)
    cli.put_object(Bucket="raw", Key="v/x.bin", Body=path.read_bytes())  # no SHA256: md5 ETag
    assert s3.verify_download(cli, "raw", "v/x.bin", path) == "md5"
    path.write_bytes(b"a" * 99 + b"b")
    with pytest.raises(s3.ChecksumError, match="md5 mismatch"):
        s3.verify_download(cli, "raw", "v/x.bin", path)


def test_bad_uri_and_empty_prefix_fail_clearly(endpoint: S3Endpoint, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="s3://BUCKET/PREFIX"):
        s3.parse_uri("raw/data")
    with pytest.raises(UsageError, match="holds no objects"):
        s3.download_prefix("s3://raw/nothing-here", tmp_path, s3=_client(endpoint.url))
    with pytest.raises(UsageError, match="NoSuchBucket"):
        s3.list_objects(_client(endpoint.url), "s3://no-such-bucket/x")


def _up_after(proxy: OutageProxy, seconds: float) -> None:
    time.sleep(seconds)
    proxy.up()


def test_download_survives_an_outage_and_leaves_nothing_partial(
    endpoint: S3Endpoint, tmp_path: Path, capsys
) -> None:
    cli = _client(endpoint.url)
    for k in range(3):
        cli.put_object(Bucket="raw", Key=f"out/f{k}.bin", Body=bytes([k]) * 4096)
    with OutageProxy(endpoint.port) as proxy:
        proxy.down()  # the endpoint refuses connections until 2 s after the first try
        threading.Thread(target=lambda: proxy.wait_refused(1) and _up_after(proxy, 2.0)).start()
        s3.download_prefix("s3://raw/out", tmp_path / "d", s3=_client(proxy.url), policy=FAST)
        assert proxy.refused > 0 and proxy.accepted > 0  # it really went through the outage
    assert "retry" in capsys.readouterr().out
    assert _files(tmp_path / "d") == {f"f{k}.bin": bytes([k]) * 4096 for k in range(3)}


def test_download_gives_up_after_the_deadline_without_partial_files(
    endpoint: S3Endpoint, tmp_path: Path
) -> None:
    cli = _client(endpoint.url)
    cli.put_object(Bucket="raw", Key="gone/f.bin", Body=b"x" * 10)
    with OutageProxy(endpoint.port) as proxy:
        proxy.down()
        policy = s3.RetryPolicy(deadline_s=2.0, initial_s=0.2, max_backoff_s=0.5)
        with pytest.raises(ConnectionError, match="still failing"):  # never comes back
            s3.download_file(_client(proxy.url), "raw", "gone/f.bin", tmp_path / "f.bin", policy)
        assert proxy.refused > 0
    assert list(tmp_path.iterdir()) == []
