"""A throw-away PostgreSQL server (Debian's postgresql package) on 127.0.0.1.

Started with the stack's own helpers (`unetflow.stack.postgres`): as root the data folder
belongs to the `postgres` user and the server runs as that user; elsewhere it runs as
the current user. Trusted connections: nothing is kept.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.net import free_port, port_open, wait_until
from unetflow.stack.postgres import (
    give_to_owner,
    init_cluster,
    start_cluster,
    stop_cluster,
)


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start PostgreSQL; yields its URL `postgresql://postgres@127.0.0.1:PORT`."""
    # Directly under /tmp so the postgres user can traverse to it when we are root.
    root = Path(tempfile.mkdtemp(prefix="unetflow-pg-"))
    root.chmod(0o755)
    data, log = root / "data", root / "server.log"
    give_to_owner(root)
    port = free_port()
    init_cluster(data)
    start_cluster(data, port, log, extra_options="-c fsync=off")
    try:
        wait_until(lambda: port_open(port), "postgres", timeout=60, log=str(log))
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        stop_cluster(data, mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


def create_database(server_url: str, name: str) -> str:
    """Create database `name`; returns its URL."""
    import psycopg

    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server_url}/{name}"
