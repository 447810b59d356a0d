"""A real S3 endpoint over HTTP (moto's server) on 127.0.0.1, for DVC, MLflow and Ray."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from unetflow.testing.net import free_port, port_open, stop, wait_until


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

    def client(self):
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.url, region_name=self.region,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
        )  # fmt: skip

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name


@contextmanager
def s3_server() -> Iterator[S3Endpoint]:
    """Run `moto_server` as a separate process (so it can be stopped and restarted)."""
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="unetflow-moto-", suffix=".log")[1])
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until(lambda: port_open(port), "moto S3 server", timeout=60, proc=proc, log=str(log))
        yield S3Endpoint(url=f"http://127.0.0.1:{port}")
    finally:
        stop(proc)
        log.unlink(missing_ok=True)
