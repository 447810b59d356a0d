"""A Prefect worker and the flow-run process it started die mid-training (SIGKILL, as
when their machine is lost): the flow run ends CRASHED (heartbeats stop; the automation
`unetflow deploy` creates marks it), and a rerun of the deployment by a fresh worker
resumes the Ray run from its last checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest

from flows import DEFAULT_POOL
from flows.crash_detection import HEARTBEAT_SECONDS, MISSED_HEARTBEATS
from flows.params import TrainParams
from tests.faults.common import (
    DICE_TOLERANCE,
    PROMPT_RECORDING,
    SLOW_MODEL,
    final_dice,
    fit_config,
    intervals_lost,
    wait_for,
)
from tests.support.net import stop
from tests.support.prefect_server import api_client, prefect_server, unetflow_deploy
from unet_core.engine import load_checkpoint

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIN = Path(sys.executable).parent
EPOCHS = 6


def _config(data: Path):
    from unetflow.config import parse_config

    values = fit_config(data=str(data), epochs=EPOCHS).model_dump(mode="json")
    values["model"] = {**values["model"], **SLOW_MODEL}
    values["train"]["batch_size"] = 4
    return parse_config(values)


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("a") as out:
        return subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", DEFAULT_POOL, "--limit", "1"],
            env={**env, "PREFECT_WORKER_QUERY_SECONDS": "2"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _checkpoints(project_dir: Path) -> dict[Path, int]:
    """Every checkpoint Ray finished writing in the project's Ray storage -> its epoch."""
    found = {}
    for path in sorted((project_dir / ".unetflow" / "ray_results").glob("*/checkpoint_*/*.pt")):
        try:
            found[path] = int(load_checkpoint(path)["epoch"])
        except Exception:  # being written: Ray registers it only once whole
            continue
    return found


def _recorded(project_dir: Path) -> dict[str, int]:
    """Checkpoints Ray Train recorded (what a resume can use): folder name -> epoch."""
    found = {}
    for path in (project_dir / ".unetflow" / "ray_results").glob(
        "*/checkpoint_manager_snapshot.json"
    ):
        try:
            results = json.loads(path.read_text())["checkpoint_results"]
        except (OSError, ValueError, KeyError):
            continue
        found.update({r["checkpoint_dir_name"]: int(r["metrics"]["epoch"]) for r in results})
    return found


def _kill_node(worker: subprocess.Popen, flow_run_id: str) -> list[psutil.Process]:
    """SIGKILL the worker and every process below it (the flow run, its Ray) at once;
    returns the flow-run processes. A process started meanwhile inherited the flow
    run's environment: a second sweep finds it by that."""
    root = psutil.Process(worker.pid)
    procs = [root, *root.children(recursive=True)]
    runs = [p for p in procs if _env(p).get("PREFECT__FLOW_RUN_ID") == flow_run_id]
    _kill(procs)
    worker.wait(30)
    _kill([p for p in psutil.process_iter() if _env(p).get("PREFECT__FLOW_RUN_ID") == flow_run_id])
    return runs


def _kill(procs: list[psutil.Process]) -> None:
    for proc in procs:
        with suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(procs, timeout=30)


def _env(proc: psutil.Process) -> dict[str, str]:
    try:
        return proc.environ()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return {}


def _parameters(project_dir: Path, data: Path) -> dict:
    """The train deployment's parameters: `_config` on the shared data."""
    params = TrainParams(project_dir=str(project_dir), config=_config(data))
    return {
        k: v.model_dump(mode="json") if hasattr(v, "model_dump") else v
        for k, v in params.parameters().items()
    }


def _state(api: str, run_id):
    with api_client(api) as client:
        return client.read_flow_run(run_id).state


def _mlflow_client(project_dir: Path):
    from mlflow import MlflowClient

    from unetflow.tracking import tracking_uri

    return MlflowClient(tracking_uri=tracking_uri(project_dir))


def _mlflow_runs(project_dir: Path) -> list:
    """Every training run in the project's MLflow store (the baseline logs none)."""
    client = _mlflow_client(project_dir)
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, filter_string="tags.`unetflow.ray_run_name` != ''")


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[str]:
    with prefect_server() as url:  # SQLite: one deployment, two runs
        yield url


def test_killed_worker_flow_run_crashes_and_rerun_resumes(
    prefect_api: str,
    project_dir: Path,
    prepared_dir: Path,
    ray_local,
    fault_record,
    tmp_path: Path,
) -> None:
    from unetflow.ray_train import fit_with_ray

    fault_record.fault = "Prefect worker + flow-run process SIGKILLed mid-training, then rerun"
    env = {
        **os.environ,
        **PROMPT_RECORDING,
        "PREFECT_API_URL": prefect_api,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("RAY_ADDRESS", None)  # each flow run starts its own local Ray, as on a node
    deploy = unetflow_deploy(project_dir, env)
    assert deploy.returncode == 0, deploy.stderr[-2000:]
    with api_client(prefect_api) as client:
        deployment = client.read_deployment_by_name("train/on-demand")
        parameters = _parameters(project_dir, prepared_dir)
        killed = client.create_flow_run_from_deployment(deployment.id, parameters=parameters)

    log = tmp_path / "worker.log"
    first = _worker(env, log)
    try:
        wait_for(lambda: _recorded(project_dir), "the first recorded checkpoint", 600, every=0.05)
        killed_at, killed_wall = time.monotonic(), datetime.now(UTC)
        flow_processes = _kill_node(first, str(killed.id))
    finally:
        stop(first)
    assert flow_processes, f"no flow-run process of {killed.id} ran under the worker"
    assert not any(p.is_running() for p in flow_processes)
    assert _state(prefect_api, killed.id).is_running()  # until the server notices
    written = _checkpoints(project_dir)  # nothing writes any more
    last_written, recorded = max(written.values()), max(_recorded(project_dir).values())
    assert last_written < EPOCHS - 1, "training had finished before the kill"

    # The rerun starts at once, as a user would; the crash is detected meanwhile.
    with api_client(prefect_api) as client:
        rerun = client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
    second = _worker(env, log)
    try:
        done = wait_for(
            lambda: (s := _state(prefect_api, rerun.id)).is_final() and s, "the rerun", 900
        )
        recover_s = time.monotonic() - killed_at
        # The same config uninterrupted, while the server's automation counts down.
        storage = str(tmp_path / "baseline")
        baseline = final_dice(fit_with_ray(_config(prepared_dir), prepared_dir, "base", storage))
        crashed = wait_for(
            lambda: (s := _state(prefect_api, killed.id)).is_final() and s, "the crash", 600
        )
    finally:
        stop(second)
    detected_s = (crashed.timestamp - killed_wall).total_seconds()
    assert crashed.is_crashed(), f"{crashed.type}: {crashed.message}"
    assert done.is_completed(), f"{done.type}: {done.message}; worker log {log}"
    assert _state(prefect_api, rerun.id).is_completed()  # the automation left it alone

    after = _checkpoints(project_dir)
    new = sorted(epoch for path, epoch in after.items() if path not in written)
    resumed_from = new[0] - 1
    # Resumed from the last checkpoint written before the kill, not from scratch.
    assert new == list(range(resumed_from + 1, EPOCHS)), new
    assert resumed_from == recorded, (resumed_from, recorded, last_written)
    last = load_checkpoint(max(after, key=after.get))
    assert [int(row["epoch"]) for row in last["history"]] == list(range(EPOCHS))
    # The rerun continued the killed run's MLflow run: one run, FINISHED, every epoch.
    runs = _mlflow_runs(project_dir)
    assert [r.info.status for r in runs] == ["FINISHED"], [r.info.status for r in runs]
    steps = [
        m.step
        for m in _mlflow_client(project_dir).get_metric_history(runs[0].info.run_id, "val_dice")
    ]
    assert sorted(set(steps)) == list(range(EPOCHS)), steps
    fault_record.recover_s = round(recover_s, 1)
    fault_record.intervals_lost = intervals_lost(last_written, resumed_from)
    fault_record.dice = float(last["history"][-1]["val_dice"])
    fault_record.baseline_dice = baseline
    fault_record.note = (
        f"marked CRASHED {detected_s:.0f} s after the kill (heartbeat every "
        f"{HEARTBEAT_SECONDS} s, crashed after {HEARTBEAT_SECONDS * MISSED_HEARTBEATS} s "
        f"without one); the rerun resumed after epoch {resumed_from + 1} of {EPOCHS}; "
        "Dice vs the same config (base_channels 32) uninterrupted"
    )
    assert abs(fault_record.dice - baseline) <= DICE_TOLERANCE
    assert fault_record.intervals_lost <= 1, (last_written, resumed_from)
    fault_record.mark_survived()
