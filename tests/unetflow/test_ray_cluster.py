"""Multi-node Ray Train: a real head + worker cluster on 127.0.0.1 with token auth,
one training worker per node, the prepared data and the checkpoints only in an S3 bucket
(moto over HTTP): every worker streams its own patches from the bucket."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.ray_cluster import ray_cluster
from tests.support.s3 import s3_server
from unet_core.engine import load_checkpoint

pytestmark = [pytest.mark.slow, pytest.mark.integration]

# The driver is its own process: the test session may already hold a local Ray.
DRIVER = r"""
import json, sys
from pathlib import Path
import ray
from ray.util.state import list_actors
from unetflow.config import parse_config
from unetflow.ray_train import fit_with_ray

cfg = parse_config(json.loads(sys.argv[1]))
out = fit_with_ray(cfg, sys.argv[2], "multinode", cfg.checkpoint.storage_path)
workers = list_actors(filters=[("class_name", "=", "RayTrainWorker")], detail=True, limit=100)
print("RESULT " + json.dumps({
    "best": out.best_metrics, "epochs": len(out.history), "path": out.best_checkpoint.path,
    "nodes": sorted({w.node_id for w in workers}),
    "cluster_nodes": len([n for n in ray.nodes() if n["Alive"]]),
}, default=str))
"""


def _upload(folder: Path, s3, bucket: str, prefix: str) -> str:
    client = s3.client()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder)}")
    return f"s3://{bucket}/{prefix}"


def test_two_node_cluster_trains_from_s3_with_checkpoints_on_s3(
    prepared_dir: Path, tmp_path
) -> None:
    cfg = {
        "name": "multinode",
        "model": {"preset": "unet", "base_channels": 8, "depth": 2},
        "data": {"patch_size": [16, 16]},
        "train": {"epochs": 2, "batch_size": 4, "steps_per_epoch": 2},
        # One `trainer` slot per node and STRICT_SPREAD: the two ranks must land on
        # different nodes, or the run could not be scheduled at all.
        "scaling": {
            "num_workers": 2,
            "resources_per_worker": {"trainer": 1},
            "placement_strategy": "STRICT_SPREAD",
        },
        "checkpoint": {"storage_path": "s3://ckpt/runs", "max_failures": 0},
    }
    local = tmp_path / "prepared"
    shutil.copytree(prepared_dir, local)
    with s3_server() as s3:
        s3.create_bucket("ckpt")
        s3.create_bucket("datasets")
        data_uri = _upload(local, s3, "datasets", "tiny/prepared")
        shutil.rmtree(local)  # no node can fall back on a local copy
        with ray_cluster({"trainer": 1}, {"trainer": 1}, cpus_per_node=1, env=s3.env()) as rc:
            env = {**os.environ, **s3.env(), **rc.env()}
            proc = subprocess.run(
                [sys.executable, "-c", DRIVER, json.dumps(cfg), data_uri],
                env=env,
                capture_output=True,
                text=True,
                timeout=420,
            )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
        result = json.loads(line.removeprefix("RESULT "))
        assert result["cluster_nodes"] == 2
        assert len(result["nodes"]) == 2, f"workers not spread over nodes: {result['nodes']}"
        assert result["epochs"] == 2 and 0.0 <= result["best"]["val_dice"] <= 1.0
        assert result["path"].startswith("ckpt/runs/multinode/")

        keys = [
            o["Key"]
            for o in s3.client().list_objects_v2(Bucket="ckpt", Prefix="runs/multinode/")[
                "Contents"
            ]
        ]
        ckpts = sorted(k for k in keys if k.endswith("/checkpoint.pt"))
        assert len(ckpts) == 2, keys  # one per epoch, both kept (num_to_keep=2)
        best_key = result["path"].removeprefix("ckpt/") + "/checkpoint.pt"
        local = tmp_path / "best.pt"
        s3.client().download_file("ckpt", best_key, str(local))
        state = load_checkpoint(local)  # weights_only=True
        assert state["epoch"] == result["best"]["epoch"]
        assert state["history"][-1]["val_dice"] == pytest.approx(result["best"]["val_dice"])
