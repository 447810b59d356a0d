"""Multi-node Ray Train: a real head + worker cluster on 127.0.0.1 with token auth,
one training worker per node, the prepared data and the checkpoints only in an S3 bucket
(moto over HTTP): every worker streams its own patches from the bucket. And
`unetflow train --submit`: the driver is a Ray Job on that cluster, survives the death
of the process that submitted it, and rerunning the command attaches to the job.

One cluster (with S3 and an MLflow server on PostgreSQL) serves the module and is
stopped with it, so no other test meets a second Ray instance on the machine."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.support.cluster_session import ClusterSession, cluster_session
from unet_core.data.prepared import PreparedStore
from unet_core.engine import load_checkpoint
from unetflow import jobs

pytestmark = [pytest.mark.slow, pytest.mark.integration]

# The driver is its own process: the test session may already hold a local Ray.
DRIVER = r"""
import json, sys
from pathlib import Path
import ray
from ray.util.state import list_actors
from unetflow.config import parse_config
from unetflow.ray_train import fit_with_ray

from mlflow import MlflowClient

cfg = parse_config(json.loads(sys.argv[1]))
# The embedded default store: a SQLite file in the driver's own folder, which no worker
# node shares. Epoch metrics must still arrive (the driver's node logs them).
uri = f"sqlite:///{Path.cwd() / 'mlflow.db'}"
client = MlflowClient(tracking_uri=uri)
run_id = client.create_run(client.create_experiment("multinode")).info.run_id
tracking = {"uri": uri, "run_id": run_id}
out = fit_with_ray(cfg, sys.argv[2], "multinode", cfg.checkpoint.storage_path, tracking)
workers = list_actors(filters=[("class_name", "=", "RayTrainWorker")], detail=True, limit=100)
print("RESULT " + json.dumps({
    "best": out.best_metrics, "epochs": len(out.history), "path": out.best_checkpoint.path,
    "nodes": sorted({w.node_id for w in workers}),
    "cluster_nodes": len([n for n in ray.nodes() if n["Alive"]]),
    "logged_steps": sorted(m.step for m in client.get_metric_history(run_id, "val_dice")),
}, default=str))
"""


REPO = Path(__file__).resolve().parents[2]
VENV_BIN = str(Path(sys.executable).parent)


@pytest.fixture(scope="module")
def cluster(prepared_dir: Path):
    with cluster_session(prepared_dir) as session:
        yield session


def _train_with_local_storage(env: dict[str, str], project: Path) -> subprocess.CompletedProcess:
    """`unetflow train` on the cluster with the default (local) checkpoint folder."""
    project.mkdir()
    # A valid project, so the refusal is about the storage and nothing else.
    from tests.conftest import TINY_PARAMS

    shutil.copy(REPO / "dvc.yaml", project / "dvc.yaml")
    (project / "params.yaml").write_text(yaml.safe_dump(TINY_PARAMS))
    return subprocess.run(
        [sys.executable, "-m", "unetflow_cli", "train", "--project-dir", str(project)],
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_two_node_cluster_trains_from_s3_with_checkpoints_on_s3(
    cluster: ClusterSession, prepared_dir: Path, tmp_path
) -> None:
    node_cache = tmp_path / "node-cache"  # both test nodes run on this machine: one folder
    cfg = {
        "name": "multinode",
        "model": {"preset": "unet", "base_channels": 8, "depth": 2},
        "data": {"patch_size": [16, 16], "node_cache_dir": str(node_cache)},
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
    s3, env = cluster.s3, cluster.env()
    refused = _train_with_local_storage(env, tmp_path / "local")
    driver_dir = tmp_path / "driver"  # its own working folder
    driver_dir.mkdir()
    # The data is only in the bucket: no node has a local copy to fall back on.
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(cfg), cluster.data_uri],
        env={**env, "PYTHONPATH": str(REPO)},
        cwd=driver_dir,
        capture_output=True,
        text=True,
        timeout=420,
    )
    # Local checkpoint storage on 2 nodes: refused before any worker, with the fix.
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    errors = [x for x in refused.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "checkpoint.storage_path: s3://" in errors[0], refused.stderr
    assert "Traceback" not in refused.stderr
    assert not list((tmp_path / "local").glob(".unetflow/ray_results/*"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    assert result["cluster_nodes"] == 2
    assert len(result["nodes"]) == 2, f"workers not spread over nodes: {result['nodes']}"
    assert result["epochs"] == 2 and 0.0 <= result["best"]["val_dice"] <= 1.0
    assert result["path"].startswith("ckpt/runs/multinode/")
    assert result["logged_steps"] == [0, 1]  # every epoch, in the driver's SQLite store
    # The workers read the bucket through the node cache: one file per case, named by the
    # case's content checksum; validation reads every val case whole.
    cases = PreparedStore(prepared_dir).manifest.cases
    cached = {p.name.removesuffix(".zip") for p in node_cache.glob("*.zip")}
    assert {c.sha256 for c in cases if c.split == "val"} <= cached <= {c.sha256 for c in cases}

    keys = [
        o["Key"]
        for o in s3.client().list_objects_v2(Bucket="ckpt", Prefix="runs/multinode/")["Contents"]
    ]
    ckpts = sorted(k for k in keys if k.endswith("/checkpoint.pt"))
    assert len(ckpts) == 2, keys  # one per epoch, both kept (num_to_keep=2)
    best_key = result["path"].removeprefix("ckpt/") + "/checkpoint.pt"
    local = tmp_path / "best.pt"
    s3.client().download_file("ckpt", best_key, str(local))
    state = load_checkpoint(local)  # weights_only=True
    assert state["epoch"] == result["best"]["epoch"]
    assert state["history"][-1]["val_dice"] == pytest.approx(result["best"]["val_dice"])


def _argv(data_uri: str) -> list[str]:
    sets = {
        "data.path": data_uri,
        "checkpoint.storage_path": "s3://ckpt/runs",
        "train.epochs": 3,
        "train.batch_size": 4,
        "model.base_channels": 4,
        "model.depth": 2,
        "scaling.num_workers": 1,
        "tracking.min_dice": 0,
    }
    argv = [os.path.join(VENV_BIN, "unetflow"), "train", "--submit"]
    for key, value in sets.items():
        argv += ["--set", f"{key}={value}"]
    return argv


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(1200)
def test_submitted_training_survives_the_submitter_and_rerun_attaches(
    tmp_path: Path, cluster: ClusterSession
) -> None:
    data_uri, uri = cluster.data_uri, cluster.mlflow_uri
    env = {**cluster.env(), "MLFLOW_TRACKING_URI": uri}
    env.pop("PYTHONPATH", None)
    workdir = tmp_path / "laptop"
    workdir.mkdir()
    first = subprocess.Popen(
        _argv(data_uri),
        env=env,
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen = []
    for line in first.stdout:
        seen.append(line)
        if line.startswith("submitted Ray job"):
            break
    assert seen and seen[-1].startswith("submitted Ray job"), "".join(seen)[-3000:]
    job_id = seen[-1].split()[3].rstrip(";")
    # The laptop closes: the submitter dies while the job trains on the cluster.
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    time.sleep(2)
    # Asked from a fresh process: this one may hold another cluster's Ray token.
    probe = "from ray.job_submission import JobSubmissionClient as C; import sys; "
    probe += "print(C().get_job_status(sys.argv[1]).value)"
    status = subprocess.run(
        [sys.executable, "-c", probe, job_id], env=env, capture_output=True, text=True
    ).stdout.strip()
    assert status in (*jobs.ACTIVE, "SUCCEEDED"), f"the job died with its submitter: {status}"
    rerun = subprocess.run(
        _argv(data_uri), env=env, cwd=workdir, capture_output=True, text=True, timeout=900
    )
    out = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, out[-4000:]
    assert f"attaching to Ray job {job_id}" in out
    assert "=== unetflow job finished ===" in out  # the job's own summary, followed here
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], "attributes.status != ''"
    )
    trained = [r for r in runs if "val_dice" in r.data.metrics]
    assert len(trained) == 1, [r.info.run_id for r in runs]  # one run, not two
    assert trained[0].info.status == "FINISHED"
    assert client.get_model_version_by_alias("unet-seg", "champion").run_id == (
        trained[0].info.run_id
    )
    assert not list(workdir.rglob("*")), "the submitter wrote into its folder"
