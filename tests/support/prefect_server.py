"""A real `prefect server start` process on 127.0.0.1 (PostgreSQL or SQLite backend)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.net import free_port, http_ok, stop, wait_until


def server_env(home: Path, database_url: str | None) -> dict[str, str]:
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    if database_url:
        # Prefect's server talks to PostgreSQL through asyncpg.
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url.replace(
            "postgresql://", "postgresql+asyncpg://", 1
        )
    return env


@contextmanager
def prefect_server(database_url: str | None = None) -> Iterator[str]:
    """Start the server; yields its API URL `http://127.0.0.1:PORT/api`."""
    home = Path(tempfile.mkdtemp(prefix="unetflow-prefect-"))
    port, log = free_port(), home / "server.log"
    prefect = str(Path(sys.executable).parent / "prefect")
    with log.open("w") as out:
        proc = subprocess.Popen(
            [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=server_env(home, database_url),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/api"
    try:
        wait_until(
            lambda: http_ok(f"{url}/health"), "prefect server", timeout=120, proc=proc, log=str(log)
        )
        yield url
    finally:
        stop(proc)
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def api_client(api: str) -> Iterator:
    """A synchronous Prefect client of the server at `api`."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as c:
        yield c


def unetflow_deploy(project_dir: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`unetflow deploy` of `project_dir` against the server `env` names, as a user runs it."""
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "unetflow"),
            "deploy",
            "--project-dir",
            str(project_dir),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
