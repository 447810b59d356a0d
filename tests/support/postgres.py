"""A throw-away PostgreSQL server (Debian's postgresql package) on 127.0.0.1.

`initdb` refuses to run as root, so as root the data folder belongs to the `postgres`
user and the server runs as that user; elsewhere it runs as the current user.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.net import free_port, port_open, wait_until


def pg_bin(name: str) -> str:
    """Path of a PostgreSQL server binary (PATH first, then /usr/lib/postgresql/*/bin)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise FileNotFoundError(
            f"PostgreSQL's {name} not found; install it (Debian: apt-get install postgresql)"
        )
    return candidates[-1]


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start PostgreSQL; yields its URL `postgresql://postgres@127.0.0.1:PORT`."""
    # Directly under /tmp so the postgres user can traverse to it when we are root.
    root = Path(tempfile.mkdtemp(prefix="unetflow-pg-"))
    root.chmod(0o755)
    data, log = root / "data", root / "server.log"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    subprocess.run(
        _as_owner([pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        _as_owner([pg_bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "start"]),
        check=True,
        capture_output=True,
    )
    try:
        wait_until(lambda: port_open(port), "postgres", timeout=60, log=str(log))
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            _as_owner([pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def create_database(server_url: str, name: str) -> str:
    """Create database `name`; returns its URL."""
    import psycopg

    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server_url}/{name}"
