"""A real `mlflow server` on 127.0.0.1: any backend store, artifacts proxied by the server.

`mlflow_stack()` is the production-like set-up: PostgreSQL backend store and an S3
artifact store (moto over HTTP), so clients need neither database nor S3 credentials.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

from tests.support.net import free_port, http_ok, wait_until
from tests.support.postgres import create_database, postgres_server
from tests.support.s3 import S3Endpoint, s3_server


@contextmanager
def mlflow_server(
    backend_store_uri: str,
    artifacts_destination: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 180.0,
) -> Iterator[str]:
    """Start `mlflow server` with one worker; yields its tracking URI `http://127.0.0.1:PORT`.

    Args:
        backend_store_uri: e.g. `postgresql://user@127.0.0.1:5432/mlflow` or `sqlite:///...`.
        artifacts_destination: e.g. `s3://bucket/` (with `MLFLOW_S3_ENDPOINT_URL` in `env`);
            None: a temporary folder.
        env: extra environment of the server process (S3 endpoint and credentials).
    """
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="unetflow-mlflow-"))
    log = workdir / "server.log"
    destination = artifacts_destination or (workdir / "artifacts").as_uri()
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend_store_uri,
        "--artifacts-destination",
        destination,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    server_env = {**os.environ, **(env or {}), "MLFLOW_DISABLE_TELEMETRY": "true"}
    with log.open("w") as out:
        # Its own session: `mlflow server` runs uvicorn as a child, and both must stop.
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=server_env,
            cwd=workdir,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: http_ok(f"{url}/health"), "mlflow server", timeout, proc=proc, log=str(log)
        )
        yield url
    finally:
        _stop_group(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def _stop_group(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout)
            os.killpg(proc.pid, 0)  # the leader exited; is any child still there?
        except ProcessLookupError:
            break
        except subprocess.TimeoutExpired:
            continue
        time.sleep(0.5)


def _enter_together(stack: ExitStack, *managers: AbstractContextManager) -> list:
    """Enter context managers in parallel threads (service start-ups are mostly waiting);
    every one that started is registered on `stack`, so it is stopped even if another failed.
    """

    def enter(manager: AbstractContextManager) -> tuple[AbstractContextManager, object]:
        return manager, manager.__enter__()

    with ThreadPoolExecutor(len(managers)) as pool:
        futures = [pool.submit(enter, m) for m in managers]
    values, error = [], None
    for future in futures:
        try:
            manager, value = future.result()
        except Exception as err:
            error = error or err
            continue
        stack.push(manager)
        values.append(value)
    if error is not None:
        raise error
    return values


@contextmanager
def mlflow_services(bucket: str = "mlflow") -> Iterator[tuple[str, S3Endpoint]]:
    """PostgreSQL + S3 (moto) + `mlflow server` with its artifacts in `bucket`; yields the
    tracking URI and the S3 endpoint (for more buckets)."""
    with ExitStack() as stack:
        pg, s3 = _enter_together(stack, postgres_server(), s3_server())
        # The driver named: SQLAlchemy 2.0 reads plain postgresql:// as psycopg2, which is
        # not installed (psycopg 3 is).
        store = create_database(pg, "mlflow").replace("postgresql://", "postgresql+psycopg://", 1)
        s3.create_bucket(bucket)
        yield stack.enter_context(mlflow_server(store, f"s3://{bucket}/", env=s3.env())), s3


@contextmanager
def mlflow_stack(bucket: str = "mlflow") -> Iterator[str]:
    """PostgreSQL + S3 (moto) + `mlflow server`; yields the tracking URI."""
    with mlflow_services(bucket) as (uri, _):
        yield uri
