"""PostgreSQL (Debian's server binaries) for MLflow's and Prefect's stores.

`initdb` refuses to run as root, so as root the data folder belongs to the `postgres`
user and the server runs as that user; elsewhere it runs as the current user. Password
authentication (scram) even on loopback: other users of the machine can reach 127.0.0.1.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

from unetflow.stack.base import StackContext, StackError
from unetflow.stack.net import LOOPBACK
from unetflow.stack.process import ProcessRecord

SUPERUSER = "postgres"
DATABASES = ("mlflow", "prefect")


def pg_bin(name: str) -> str:
    """Path of a PostgreSQL server binary (PATH first, then /usr/lib/postgresql/*/bin)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise StackError(
            f"PostgreSQL's {name} not found; install it (Debian: apt-get install postgresql)"
        )
    return candidates[-1]


def as_owner(cmd: list[str]) -> list[str]:
    """`cmd` run as the data folder's owner: `postgres` when we are root."""
    return ["runuser", "-u", SUPERUSER, "--", *cmd] if os.geteuid() == 0 else cmd


def give_to_owner(path: Path) -> None:
    """As root, hand `path` to the postgres user (initdb and the server run as it)."""
    if os.geteuid() == 0:
        shutil.chown(path, SUPERUSER, SUPERUSER)


def init_cluster(data: Path, password_file: Path | None = None) -> None:
    """`initdb` a new cluster in `data` (an empty or missing folder whose parent exists).

    With `password_file`, the superuser gets that password and every connection needs
    it; without, connections are trusted (throw-away test servers).
    """
    auth = (
        ["-A", "scram-sha-256", f"--pwfile={password_file}"] if password_file else ["-A", "trust"]
    )
    cmd = [pg_bin("initdb"), "-D", str(data), "-U", SUPERUSER, "-E", "UTF8", *auth]
    proc = subprocess.run(as_owner(cmd), capture_output=True, text=True)
    if proc.returncode != 0:
        raise StackError(f"initdb {data} failed: {proc.stderr.strip()[-500:]}")


def start_cluster(data: Path, port: int, log: Path, extra_options: str = "") -> None:
    """Start the server of `data` on 127.0.0.1:`port` only (pg_ctl returns once it runs).

    TCP only (`-k ''`: no Unix socket): a socket path under a deep project folder can
    pass the 107-byte limit, and the default socket folder may not be writable.
    """
    options = f"-p {port} -k '' -c listen_addresses={LOOPBACK} {extra_options}".strip()
    cmd = [pg_bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"]
    proc = subprocess.run(as_owner(cmd), capture_output=True, text=True)
    if proc.returncode != 0:
        raise StackError(f"PostgreSQL did not start: {proc.stderr.strip()[-500:]}; see {log}")


def stop_cluster(data: Path, mode: str = "fast") -> None:
    cmd = [pg_bin("pg_ctl"), "-D", str(data), "-m", mode, "-w", "stop"]
    subprocess.run(as_owner(cmd), capture_output=True)


class Postgres:
    """The stack's PostgreSQL server: databases `mlflow` and `prefect`."""

    name = "postgres"

    def __init__(self, ctx: StackContext) -> None:
        self.ctx = ctx
        self.home = ctx.root / "postgres"
        self.data = self.home / "data"

    @property
    def port(self) -> int:
        return self.ctx.state.ports[self.name]

    @property
    def password(self) -> str:
        return self.ctx.state.pg_password

    def start(self) -> None:
        self._prepare_home()
        if not (self.data / "PG_VERSION").is_file():
            self._initdb()
        log = self.ctx.log(self.name)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.touch()
        give_to_owner(log)
        start_cluster(self.data, self.ctx.port(self.name), log)
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        import psutil

        self.ctx.record(self.name, ProcessRecord(pid, psutil.Process(pid).create_time()))
        self._create_databases()

    def _prepare_home(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        give_to_owner(self.home)
        check = subprocess.run(as_owner(["test", "-w", str(self.home)]), capture_output=True)
        if check.returncode != 0:
            raise StackError(
                f"PostgreSQL runs as user {SUPERUSER} (initdb refuses root) and cannot write "
                f"{self.home}: let others traverse its parent folders (chmod o+x) or use a "
                "--project-dir outside /root"
            )

    def _initdb(self) -> None:
        pwfile = self.home / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        give_to_owner(pwfile)
        try:
            init_cluster(self.data, pwfile)
        finally:
            pwfile.unlink(missing_ok=True)

    def _connect(self, dbname: str = "postgres"):
        import psycopg

        return psycopg.connect(
            host=LOOPBACK,
            port=self.port,
            user=SUPERUSER,
            password=self.password,
            dbname=dbname,
            connect_timeout=2,
            autocommit=True,
        )

    def _create_databases(self) -> None:
        with self._connect() as conn:
            existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
            for name in DATABASES:
                if name not in existing:
                    conn.execute(f'CREATE DATABASE "{name}"')

    def healthy(self) -> bool:
        if self.name not in self.ctx.state.ports:
            return False
        try:
            with self._connect() as conn:
                conn.execute("SELECT 1")
        except Exception:
            return False
        return True

    def stop(self) -> None:
        if self.ctx.running(self.name):
            stop_cluster(self.data)
        self.ctx.stop_recorded(self.name)

    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@{LOOPBACK}:{self.ctx.state.ports.get(self.name)}"

    def database_url(self, name: str, driver: str = "postgresql") -> str:
        """URL of database `name`, without the password (clients take it from PGPASSWORD)."""
        return f"{driver}://{SUPERUSER}@{LOOPBACK}:{self.port}/{name}"

    def env(self) -> dict[str, str]:
        return {}  # clients reach the databases through MLflow and Prefect only
