"""`prefect server` on the stack's PostgreSQL, and a process worker on the project's pool.

The worker runs every scheduled or UI-started flow run with the stack's client
environment, so those runs log to the stack's MLflow and train on its Ray cluster.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

from unetflow.stack.base import StackContext, base_env
from unetflow.stack.net import LOOPBACK, http_ok
from unetflow.stack.postgres import Postgres
from unetflow.stack.process import spawn

PREFECT = str(Path(sys.executable).with_name("prefect"))
WORKER_NAME = "unetflow-stack"


class PrefectServer:
    name = "prefect"

    def __init__(self, ctx: StackContext, postgres: Postgres) -> None:
        self.ctx, self.postgres = ctx, postgres

    def start(self) -> None:
        port = self.ctx.port(self.name)
        database = self.postgres.database_url("prefect", driver="postgresql+asyncpg")
        env = base_env(
            PREFECT_HOME=str(self.ctx.root / "prefect"),
            # An environment variable, not an argument: `ps` shows arguments to everyone.
            PREFECT_API_DATABASE_CONNECTION_URL=database.replace(
                "postgres@", f"postgres:{self.ctx.state.pg_password}@", 1
            ),
            # The UI asks the browser to call this; by default it assumes port 4200.
            PREFECT_UI_API_URL=f"{self.url()}/api",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
        )
        cmd = [PREFECT, "server", "start", "--host", LOOPBACK, "--port", str(port)]
        self.ctx.record(self.name, spawn(cmd, env, self.ctx.log(self.name), self.ctx.root))

    def healthy(self) -> bool:
        return self.name in self.ctx.state.ports and http_ok(f"{self.url()}/api/health")

    def stop(self) -> None:
        self.ctx.stop_recorded(self.name)

    def url(self) -> str:
        """The UI; the API is under /api."""
        return f"http://{LOOPBACK}:{self.ctx.state.ports.get(self.name)}"

    def env(self) -> dict[str, str]:
        return {"PREFECT_API_URL": f"{self.url()}/api"}


class PrefectWorker:
    """`prefect worker start` on the pool; `client_env` is what its flow runs get."""

    name = "prefect-worker"

    def __init__(
        self, ctx: StackContext, server: PrefectServer, client_env: Callable[[], dict[str, str]]
    ) -> None:
        self.ctx, self.server, self.client_env = ctx, server, client_env

    def start(self) -> None:
        cmd = [PREFECT, "worker", "start", "--pool", self.ctx.options.pool]
        cmd += ["--type", "process", "--name", WORKER_NAME]
        env = base_env(
            **self.client_env(),
            PREFECT_HOME=str(self.ctx.root / "prefect-worker"),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
        )
        log = self.ctx.log(self.name)
        self.ctx.record(self.name, spawn(cmd, env, log, self.ctx.project_dir))

    def healthy(self) -> bool:
        """Running, and the server lists it as online on the pool."""
        if not self.ctx.running(self.name) or not self.server.healthy():
            return False
        url = f"{self.server.url()}/api/work_pools/{self.ctx.options.pool}/workers/filter"
        request = urllib.request.Request(
            url, data=b"{}", headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=3) as response:
                workers = json.load(response)
        except OSError:
            return False
        return any(w["name"] == WORKER_NAME and w["status"] == "ONLINE" for w in workers)

    def stop(self) -> None:
        self.ctx.stop_recorded(self.name)

    def url(self) -> str:
        return f"{self.server.url()}/work-pools/work-pool/{self.ctx.options.pool}"

    def env(self) -> dict[str, str]:
        return {}
