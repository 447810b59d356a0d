"""The production-like cluster set-up, started once for every test that needs it.

A two-node Ray cluster on loopback with token auth, whose nodes share no folder with
the driver: the data and checkpoints live in a moto S3 bucket, MLflow is a server on
PostgreSQL with S3 artifacts. Starting it is most of each such test's cost, so the
session shares one; every test uses its own run names, so they do not meet.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.mlflow_server import mlflow_services
from tests.support.ray_cluster import RayCluster, ray_cluster
from tests.support.s3 import S3Endpoint

VENV_BIN = str(Path(sys.executable).parent)
BUCKETS = ("datasets", "ckpt")  # and "mlflow", the tracking server's own


@dataclass(frozen=True)
class ClusterSession:
    s3: S3Endpoint
    cluster: RayCluster
    mlflow_uri: str
    data_uri: str  # the tiny prepared set, only in the bucket

    def env(self) -> dict[str, str]:
        """A driver's environment: this process's, plus S3 and the cluster's address."""
        return {**os.environ, **self.s3.env(), **self.cluster.env()}


@contextmanager
def cluster_session(prepared: Path) -> Iterator[ClusterSession]:
    """Each node has one `trainer` slot (so STRICT_SPREAD puts a rank on each) and 2 CPUs,
    S3 credentials and the project installed (`unetflow` on PATH), as a cluster image would."""
    with ExitStack() as stack:
        uri, s3 = stack.enter_context(mlflow_services("mlflow"))
        for bucket in BUCKETS:
            s3.create_bucket(bucket)
        data_uri = s3.upload_folder(prepared, "datasets", "tiny/prepared")
        node_env = {**s3.env(), "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
        slot = {"trainer": 1}
        cluster = stack.enter_context(ray_cluster(slot, slot, cpus_per_node=2, env=node_env))
        yield ClusterSession(s3=s3, cluster=cluster, mlflow_uri=uri, data_uri=data_uri)
