"""`unetflow train --submit`: what is refused before a job is submitted, and how job
attempts are named. The submitted job on a real two-node cluster, surviving its
submitter, is tested with the other cluster tests in `tests/unetflow/test_ray_cluster.py`.
"""

from __future__ import annotations

import pytest

from unetflow import jobs
from unetflow.config import parse_config
from unetflow.errors import UsageError


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
