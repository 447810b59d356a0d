"""`unetflow train --submit`: the driver is a Ray Job on the cluster and survives the
death of the process that submitted it; rerunning the command attaches to the job.

Real parts: a two-node Ray cluster on loopback with token auth, the data and the
checkpoints only in a moto S3 bucket, MLflow a server on PostgreSQL with S3 artifacts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.cluster_session import ClusterSession
from unetflow import jobs
from unetflow.config import parse_config
from unetflow.errors import UsageError

VENV_BIN = str(Path(sys.executable).parent)


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


def test_submit_refuses_what_the_head_node_cannot_reach(monkeypatch) -> None:
    good = {
        "data": {"path": "s3://datasets/x"},
        "checkpoint": {"storage_path": "s3://ckpt/runs"},
    }
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    jobs.check_submittable(parse_config(good))
    cases = [
        ({**good, "data": {"path": "data/prepared"}}, "data.path 'data/prepared' is a local"),
        ({"data": good["data"]}, "checkpoint.storage_path: s3://"),
    ]
    for raw, words in cases:
        with pytest.raises(UsageError, match=words):
            jobs.check_submittable(parse_config(raw))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    with pytest.raises(UsageError, match="MLFLOW_TRACKING_URI=http"):
        jobs.check_submittable(parse_config(good))
    monkeypatch.delenv("RAY_ADDRESS")
    with pytest.raises(UsageError, match="RAY_ADDRESS"):
        jobs.check_submittable(parse_config(good))


def test_attempt_ids_continue_after_a_failed_job() -> None:
    assert jobs.next_id("unetflow-x", None) == "unetflow-x"
    assert jobs.next_id("unetflow-x", "unetflow-x") == "unetflow-x-2"
    assert jobs.next_id("unetflow-x", "unetflow-x-2") == "unetflow-x-3"
