"""A real S3 endpoint over HTTP (moto's server) on 127.0.0.1, for DVC, MLflow and Ray."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from tests.support.net import free_port, port_open, stop, wait_until


@dataclass(frozen=True)
class S3Endpoint:
    url: str  # http://127.0.0.1:PORT
    access_key: str = "testing"
    secret_key: str = "testing-secret"
    region: str = "us-east-1"

    def env(self) -> dict[str, str]:
        """The standard variables that point boto3, DVC, pyarrow and MLflow at it."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ENDPOINT_URL_S3": self.url,
            "MLFLOW_S3_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def upload_folder(self, folder: Path, bucket: str, prefix: str) -> str:
        """Upload every file under `folder` to `bucket/prefix/...`; returns its s3:// URI."""
        client = self.client()
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder)}")
        return f"s3://{bucket}/{prefix}"


@contextmanager
def s3_server() -> Iterator[S3Endpoint]:
    """Run `moto_server` as a separate process (so it can be stopped and restarted)."""
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="unetflow-moto-", suffix=".log")[1])
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: port_open(port), "moto S3 server", timeout=60, proc=proc, log=str(log))
        yield S3Endpoint(url=f"http://127.0.0.1:{port}")
    finally:
        stop(proc)
        log.unlink(missing_ok=True)


@contextmanager
def s3_server_in_env(*buckets: str) -> Iterator[S3Endpoint]:
    """`s3_server` with its credentials and endpoint in `os.environ` (restored after), as
    users pass them, and `buckets` created."""
    with s3_server() as server, mock.patch.dict(os.environ, server.env()):
        for bucket in buckets:
            server.create_bucket(bucket)
        yield server


class OutageProxy:
    """A TCP proxy on 127.0.0.1 in front of a server, that can be taken down and up again.

    While down, every connection is reset as soon as it is made and open ones are cut, as
    when an S3 endpoint restarts; the server behind keeps its state (moto loses all of it
    on restart). `refused` counts the connections turned away, so a test can wait until a
    client has really hit the outage before ending it.

    Example:
        >>> with s3_server() as s3, OutageProxy(s3.port) as proxy:
        ...     proxy.down(); ...; proxy.up()  # clients use proxy.url
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.accepted = 0  # connections forwarded so far
        self.refused = 0  # connections reset while down
        self._down = False
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> OutageProxy:
        self._listener.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()
        _close(self._listener)

    def up(self) -> None:
        """Forward connections again."""
        self._down = False

    def down(self) -> None:
        """Reset new connections and cut every open one."""
        self._down = True
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            _close(conn)

    def wait_refused(self, count: int = 1, timeout: float = 60.0) -> bool:
        """Wait until `count` connections were turned away (True) or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while self.refused < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.refused >= count

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # listener closed on exit
                return
            if self._down:
                # Linger 0: close with RST, as a host that refuses the connection.
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                self.refused += 1
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._conns.update((client, upstream))
                self.accepted += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(src, dst), daemon=True).start()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        _close(src)
        _close(dst)


def _close(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
