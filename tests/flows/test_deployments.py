"""Deployments against a real `prefect server` (PostgreSQL backend) and a real worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect.client.schemas.sorting import DeploymentSort, FlowSort

from tests.support.net import stop
from tests.support.postgres import create_database, postgres_server
from tests.support.prefect_server import api_client, prefect_server, unetflow_deploy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def server() -> str:
    with postgres_server() as pg, prefect_server(create_database(pg, "prefect")) as api_url:
        yield api_url


@pytest.fixture
def client_env(server: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PREFECT_API_URL": server,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


def test_deploy_then_worker_runs_a_deployment_with_retries(
    server: str, client_env: dict[str, str], project_dir: Path, tmp_path: Path
) -> None:
    deploy = unetflow_deploy(project_dir, client_env)
    assert deploy.returncode == 0, deploy.stderr[-2000:]

    with api_client(server) as client:
        deployments = client.read_deployments(limit=100, sort=DeploymentSort.NAME_ASC)
        flows = {f.id: f.name for f in client.read_flows(limit=100, sort=FlowSort.NAME_ASC)}
    by_flow = {f"{flows[d.flow_id]}/{d.name}": d for d in deployments}
    assert {
        "pipeline/nightly",
        "tune/weekly",
        "data_prep/on-demand",
        "train/on-demand",
        "evaluate_and_promote/on-demand",
    } <= set(by_flow)
    crons = {k: [s.schedule.cron for s in d.schedules] for k, d in by_flow.items()}
    assert crons["pipeline/nightly"] == ["0 2 * * *"]
    assert crons["tune/weekly"] == ["0 3 * * 0"]
    schema = by_flow["train/on-demand"].parameter_openapi_schema
    assert {"project_dir", "data", "model", "train"} <= set(schema["properties"])  # the UI form

    # The DVC remote's parent is a file, so the first push fails; once Prefect has
    # scheduled the retry the "outage" ends (the file goes) and the retried push succeeds.
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    (project_dir / ".dvc").exists() or subprocess.run(
        [sys.executable, "-m", "dvc", "init", "--no-scm"], cwd=project_dir, check=True
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "dvc",
            "remote",
            "add",
            "--local",
            "-d",
            "storage",
            str(blocker / "remote"),
        ],
        cwd=project_dir,
        check=True,
    )

    worker = subprocess.Popen(
        [str(BIN / "prefect"), "worker", "start", "--pool", "unetflow-process"],
        env=client_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        flow_run = _run_and_wait(
            server,
            by_flow["data_prep/on-demand"].id,
            on_retry=lambda: blocker.is_file() and blocker.unlink(),
        )
    finally:
        stop(worker)
    assert flow_run.state.is_completed(), flow_run.state

    with api_client(server) as client:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        runs_filter = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id]))
        task_runs = client.read_task_runs(flow_run_filter=runs_filter)
        artifacts = client.read_artifacts(flow_run_filter=runs_filter)
    push = [t for t in task_runs if t.name.startswith("dvc-push")]
    assert push and push[0].run_count >= 2 and push[0].state.is_completed()
    assert "data-summary" in {a.key for a in artifacts}
    assert (blocker / "remote").is_dir()


def _run_and_wait(server: str, deployment_id, on_retry, timeout: float = 420.0):
    """Trigger a run through the API; call `on_retry` once a task awaits a retry."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with api_client(server) as client:
        run = client.create_flow_run_from_deployment(deployment_id)
        runs_filter = FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = client.read_flow_run(run.id)
            if run.state is not None and run.state.is_final():
                return run
            states = {t.state.name for t in client.read_task_runs(flow_run_filter=runs_filter)}
            if states & {"AwaitingRetry", "Retrying"}:
                on_retry()
            time.sleep(1)
    raise TimeoutError(f"flow run {run.id} not finished after {timeout}s: {run.state}")


HELLO_FLOW = """
from prefect import flow


@flow
def hello() -> str:
    return "scheduled"
"""


def test_scheduler_creates_runs_and_a_worker_completes_one(
    server: str, client_env: dict[str, str], project_dir: Path, tmp_path: Path
) -> None:
    """Nothing is triggered by hand: every run here comes from the server's scheduler."""
    from prefect import Flow

    from flows.deployments import ensure_work_pool

    deploy = unetflow_deploy(project_dir, client_env)
    assert deploy.returncode == 0, deploy.stderr[-2000:]
    _assert_crash_detection(server)  # the module's server was deployed to once before
    # A tiny flow every 5 s on its own pool: the worker below can only pick up its runs.
    (tmp_path / "hello_flow.py").write_text(HELLO_FLOW)
    with api_client(server):
        ensure_work_pool("schedule-test")
        source = Flow.from_source(source=str(tmp_path), entrypoint="hello_flow.py:hello")
        hello_id = source.to_deployment(
            name="every-5s", interval=5, work_pool_name="schedule-test"
        ).apply(work_pool_name="schedule-test")

    nightly = _wait_for_scheduled_runs(server, "pipeline", "nightly")
    assert {(r.expected_start_time.hour, r.expected_start_time.minute) for r in nightly} == {(2, 0)}
    weekly = _wait_for_scheduled_runs(server, "tune", "weekly")
    assert {(r.expected_start_time.weekday(), r.expected_start_time.hour) for r in weekly} == {
        (6, 3)  # Sunday 03:00 UTC
    }

    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            # One run at a time: runs pile up every 5 s while the worker starts.
            [str(BIN / "prefect"), "worker", "start", "--pool", "schedule-test", "--limit", "1"],
            env={**client_env, "PREFECT_WORKER_QUERY_SECONDS": "2"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        done = _wait_for_runs(
            server, hello_id, lambda r: r.state and r.state.is_completed(), timeout=300
        )
    except TimeoutError as err:
        raise AssertionError(f"{err}; worker log:\n{log.read_text()[-3000:]}") from None
    finally:
        stop(worker)
    assert all(r.auto_scheduled for r in done), "a run was not created by the scheduler"


def _assert_crash_detection(server: str) -> None:
    """A rerun of `deploy` leaves one zombie automation; every run gets the heartbeats
    it watches (tests/faults/test_prefect_worker_kill.py kills a run for real)."""
    from flows.crash_detection import AUTOMATION_NAME, heartbeat_env

    with api_client(server) as client:
        automations = client.read_automations_by_name(AUTOMATION_NAME)
        deployments = client.read_deployments(limit=100, sort=DeploymentSort.NAME_ASC)
    assert len(automations) == 1 and automations[0].enabled
    assert automations[0].actions[0].type == "change-flow-run-state"
    for deployment in deployments:
        if "unetflow" in deployment.tags:
            assert deployment.job_variables["env"] == heartbeat_env(), deployment.name


def _wait_for_scheduled_runs(server: str, flow_name: str, name: str, timeout: float = 90.0):
    with api_client(server) as client:
        deployment_id = client.read_deployment_by_name(f"{flow_name}/{name}").id
    return _wait_for_runs(
        server, deployment_id, lambda r: r.auto_scheduled and r.state.is_scheduled(), timeout
    )


def _wait_for_runs(server: str, deployment_id, accept, timeout: float = 120.0) -> list:
    """Poll the deployment's flow runs until some satisfy `accept`; returns those."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    only = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with api_client(server) as client:
            runs = [r for r in client.read_flow_runs(deployment_filter=only) if accept(r)]
        if runs:
            return runs
        time.sleep(2)
    raise TimeoutError(f"no matching run of deployment {deployment_id} after {timeout:.0f}s")
