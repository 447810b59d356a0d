"""`mlflow server` on the stack's PostgreSQL, artifacts proxied to its S3 bucket.

Clients need neither database nor S3 credentials: they talk HTTP to the server only.
"""

from __future__ import annotations

import sys

from unetflow.stack.base import StackContext, base_env
from unetflow.stack.net import LOOPBACK, http_ok
from unetflow.stack.postgres import Postgres
from unetflow.stack.process import spawn
from unetflow.stack.s3 import S3


class MlflowServer:
    name = "mlflow"

    def __init__(self, ctx: StackContext, postgres: Postgres, s3: S3) -> None:
        self.ctx, self.postgres, self.s3 = ctx, postgres, s3

    def start(self) -> None:
        self.s3.ensure_bucket(self.ctx.options.bucket)
        port = self.ctx.port(self.name)
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            # The driver named: SQLAlchemy 2.0 would pick psycopg2 for plain postgresql://.
            self.postgres.database_url("mlflow", driver="postgresql+psycopg"),
            "--artifacts-destination",
            f"s3://{self.ctx.options.bucket}/",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--workers",
            "1",
            # Host headers it answers (against DNS rebinding): this address only.
            "--allowed-hosts",
            f"{LOOPBACK}:{port},localhost:{port}",
        ]
        env = base_env(
            **self.s3.env(),
            # libpq reads the password here: on the command line `ps` would show it.
            PGPASSWORD=self.ctx.state.pg_password,
            MLFLOW_DISABLE_TELEMETRY="true",
        )
        self.ctx.record(self.name, spawn(cmd, env, self.ctx.log(self.name), self.ctx.root))

    def healthy(self) -> bool:
        return self.name in self.ctx.state.ports and http_ok(f"{self.url()}/health")

    def stop(self) -> None:
        self.ctx.stop_recorded(self.name)

    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.ctx.state.ports.get(self.name)}"

    def env(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_URI": self.url()}
