"""Resume for real: a search driver started from the CLI is killed with SIGKILL after some
trials finished; `unetflow tune --resume` finishes it without rerunning finished trials
and without duplicate MLflow child runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.faults.recorder import fault_record  # noqa: F401  (a fixture)
from tune.mlflow_logging import SEARCH_TAG, child_runs
from unetflow.tracking import tracking_uri
from unetflow_cli.main import main

SPACE = Path(__file__).resolve().parents[2] / "tune" / "spaces" / "hpo.yaml"
NAME = "resume-test"


def _finished_children(uri: str, name: str) -> dict[str, str]:
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("unetflow")
    if experiment is None:
        return {}
    runs = child_runs(uri, experiment.experiment_id, name)
    return {
        r.data.tags["unetflow.trial_id"]: r.info.run_id for r in runs if r.info.status == "FINISHED"
    }


@pytest.mark.slow
@pytest.mark.integration
def test_killed_search_resumes_without_rerun_or_duplicates(
    ray_local: None,
    prepared_dir: Path,
    project_dir: Path,
    fault_record,  # noqa: F811
) -> None:
    import ray

    fault_record.fault = "Tune search driver SIGKILLed, then resumed"
    fault_record.note = "Dice and work lost are not measured by this test"

    args = [
        "tune",
        "--space",
        str(SPACE),
        "--name",
        NAME,
        "--num-samples",
        "4",
        "--epochs",
        "2",
        "--scheduler",
        "fifo",
        "--max-concurrent",
        "1",
        "--data",
        str(prepared_dir),
        "--project-dir",
        str(project_dir),
        "--set",
        "model.base_channels=8",
        "--set",
        "model.depth=2",
        "--set",
        "scaling.num_workers=1",
    ]
    # The driver joins the session's cluster, so killing it kills only the driver.
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    driver = subprocess.Popen(
        [sys.executable, "-m", "unetflow_cli.main", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    uri = tracking_uri(project_dir)
    try:
        deadline = time.monotonic() + 400
        while len(finished := _finished_children(uri, NAME)) < 1:
            assert driver.poll() is None, "the search ended before it could be killed"
            assert time.monotonic() < deadline, "no trial finished in time"
            time.sleep(1)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    client = MlflowClient(tracking_uri=uri)
    before = {t: len(client.get_metric_history(r, "val_dice")) for t, r in finished.items()}
    assert all(n == 2 for n in before.values())

    killed_at = time.monotonic()
    assert main(["tune", "--resume", NAME, "--project-dir", str(project_dir)]) == 0
    fault_record.recover_s = round(time.monotonic() - killed_at, 1)  # the whole resume

    experiment_id = client.get_experiment_by_name("unetflow").experiment_id
    children = child_runs(uri, experiment_id, NAME)
    trial_ids = [r.data.tags["unetflow.trial_id"] for r in children]
    assert len(trial_ids) == 4 == len(set(trial_ids)), "duplicate or missing child runs"
    for run in children:
        assert run.info.status == "FINISHED"
        assert len(client.get_metric_history(run.info.run_id, "val_dice")) == 2
    for trial_id, run_id in finished.items():  # finished before the kill: not rerun
        assert len(client.get_metric_history(run_id, "val_dice")) == before[trial_id]
    parents = client.search_runs(
        [experiment_id],
        f"tags.`{SEARCH_TAG}` = '{NAME}' and tags.`unetflow.search_role` = 'parent'",
    )
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    fault_record.mark_survived()
