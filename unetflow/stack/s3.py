"""An S3 endpoint for MLflow's artifacts: MinIO when it is on PATH, else moto's server.

moto keeps objects in memory: artifacts are lost when the stack stops. MinIO keeps them
under `.unetflow/stack/s3/`.
"""

from __future__ import annotations

import shutil
import sys

from unetflow.stack.base import StackContext, StackError, base_env
from unetflow.stack.net import LOOPBACK, free_port, http_ok
from unetflow.stack.process import spawn

REGION = "us-east-1"


class S3:
    name = "s3"

    def __init__(self, ctx: StackContext) -> None:
        self.ctx = ctx
        self.minio = shutil.which("minio")

    def start(self) -> None:
        port = self.ctx.port(self.name)
        env = base_env()
        if self.minio:
            data = self.ctx.root / "s3"
            data.mkdir(parents=True, exist_ok=True)
            cmd = [
                self.minio,
                "server",
                str(data),
                "--address",
                f"{LOOPBACK}:{port}",
                "--console-address",
                f"{LOOPBACK}:{free_port()}",
            ]
            env |= {
                "MINIO_ROOT_USER": self.ctx.state.s3_access_key,
                "MINIO_ROOT_PASSWORD": self.ctx.state.s3_secret_key,
            }
        else:
            _require_moto()
            cmd = [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)]
        self.ctx.record(self.name, spawn(cmd, env, self.ctx.log(self.name), self.ctx.root))

    def healthy(self) -> bool:
        if self.name not in self.ctx.state.ports:
            return False
        path = "/minio/health/live" if self.minio else "/moto-api/"
        return http_ok(self.url() + path)

    def ensure_bucket(self, bucket: str) -> None:
        """Create `bucket` unless it exists (moto forgets its buckets on every restart)."""
        client = self.client()
        if bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
            client.create_bucket(Bucket=bucket)

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url(),
            aws_access_key_id=self.ctx.state.s3_access_key,
            aws_secret_access_key=self.ctx.state.s3_secret_key,
            region_name=REGION,
        )

    def stop(self) -> None:
        self.ctx.stop_recorded(self.name)

    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.ctx.state.ports.get(self.name)}"

    def env(self) -> dict[str, str]:
        """The standard variables that point boto3, DVC, pyarrow and MLflow at it."""
        return {
            "AWS_ENDPOINT_URL": self.url(),
            "AWS_ENDPOINT_URL_S3": self.url(),
            "MLFLOW_S3_ENDPOINT_URL": self.url(),
            "AWS_ACCESS_KEY_ID": self.ctx.state.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": self.ctx.state.s3_secret_key,
            "AWS_DEFAULT_REGION": REGION,
        }


def _require_moto() -> None:
    try:
        import moto.server  # noqa: F401
    except ImportError as err:
        raise StackError(
            "no S3 server: put MinIO's `minio` on PATH, or pip install 'moto[server]'"
        ) from err
