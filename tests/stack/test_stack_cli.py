"""`unetflow stack up | status | down` against real services (one stack per package).

Runs after the browser tests (file order): the last test stops the stack.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys

import psutil
import pytest

from tests.stack.conftest import StackUnderTest, run_cli
from unetflow.stack.net import LOOPBACK, free_port, http_ok, port_open, wait_until
from unetflow.stack.ray import pids_naming
from unetflow.stack.state import env_file, stack_root

# The first test also pays for the shared stack's start (minutes on a busy machine).
pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(1800)]

SERVICES = ("postgres", "s3", "ray-head", "mlflow", "prefect", "prefect-worker", "ray-worker")
SECRETS = ("RAY_AUTH_TOKEN", "AWS_SECRET_ACCESS_KEY")


def _status_rows(output: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in output.splitlines() if line.strip()}


def test_up_starts_every_service_and_writes_a_private_env_file(stack: StackUnderTest) -> None:
    assert "started: " + ", ".join(SERVICES) in stack.up_output
    env = stack.env()
    assert env["MLFLOW_TRACKING_URI"].startswith(f"http://{LOOPBACK}:")
    assert env["PREFECT_API_URL"].startswith(f"http://{LOOPBACK}:")
    assert env["RAY_ADDRESS"].startswith(f"{LOOPBACK}:")
    assert env["RAY_AUTH_MODE"] == "token"
    assert env_file(stack.project).stat().st_mode & 0o077 == 0  # owner only
    state_file = stack_root(stack.project) / "state.json"
    assert state_file.stat().st_mode & 0o077 == 0
    for name in SECRETS:
        assert len(env[name]) >= 16 and env[name] not in stack.up_output
    assert stack.state().pg_password not in stack.up_output


def test_status_shows_every_service_healthy_with_its_url(stack: StackUnderTest) -> None:
    status = run_cli("stack", "status", "--project-dir", str(stack.project))
    assert status.returncode == 0, status.stdout + status.stderr
    rows = _status_rows(status.stdout)
    assert set(rows) == set(SERVICES)
    assert all(row[0] == "healthy" for row in rows.values()), status.stdout
    env = stack.env()
    assert rows["mlflow"][1] == env["MLFLOW_TRACKING_URI"]
    assert http_ok(rows["mlflow"][1] + "/health")
    assert rows["prefect"][1] + "/api" == env["PREFECT_API_URL"]
    assert http_ok(rows["prefect"][1] + "/api/health")
    assert http_ok(rows["ray-head"][1])  # the dashboard
    for secret in SECRETS:
        assert env[secret] not in status.stdout


def test_second_up_is_a_quick_no_op(stack: StackUnderTest) -> None:
    before = stack.state().processes
    again = run_cli("stack", "up", "--project-dir", str(stack.project))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already running" in again.stdout
    assert stack.state().processes == before  # the same processes, none restarted


def _listeners(stack: StackUnderTest) -> list[tuple[str, int, str, str]]:
    """(address, port, process, service) of every TCP listener of the stack's processes."""
    procs: dict[int, tuple[psutil.Process, str]] = {}
    for service, record in stack.state().processes.items():
        parent = psutil.Process(record.pid)
        for proc in [parent, *parent.children(recursive=True)]:
            procs[proc.pid] = (proc, service)
    # Ray's workers leave their node's process group; they name its temp folder.
    for pid in pids_naming(_ray_temp(stack)):
        procs.setdefault(pid, (psutil.Process(pid), "ray worker process"))
    out = []
    for proc, service in procs.values():
        try:
            conns = proc.net_connections(kind="tcp")
        except psutil.Error:
            continue
        out += [
            (c.laddr.ip, c.laddr.port, proc.name(), service) for c in conns if c.status == "LISTEN"
        ]
    return out


def _ray_temp(stack: StackUnderTest):
    from unetflow.stack.ray import RayHead

    return RayHead.temp_dir_of(stack_root(stack.project))


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def test_every_service_listens_on_loopback_only(stack: StackUnderTest) -> None:
    listeners = _listeners(stack)
    ports = {port for _, port, _, _ in listeners}
    assert set(stack.state().ports.values()) <= ports  # the check saw every service
    outside = [entry for entry in listeners if not _loopback(entry[0])]
    assert not outside, f"listening beyond loopback: {outside}"


def test_ray_worker_node_listens_on_loopback_only(stack: StackUnderTest) -> None:
    worker = [entry for entry in _listeners(stack) if entry[3] == "ray-worker"]
    assert worker, "the worker node's listeners were not found"
    outside = [entry for entry in worker if not _loopback(entry[0])]
    assert not outside, f"listening beyond loopback: {outside}"


def test_down_stops_only_what_up_started(stack: StackUnderTest) -> None:
    # A service of the same kind started outside the stack must survive `down`.
    port = free_port()
    outsider = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: port_open(port), "outside moto server", timeout=60, proc=outsider)
        records = stack.state().processes
        ports = stack.state().ports
        down = run_cli("stack", "down", "--project-dir", str(stack.project))
        assert down.returncode == 0, down.stdout + down.stderr
        assert "stopped: " in down.stdout
        assert not [name for name, record in records.items() if record.alive()]
        assert not [name for name, p in ports.items() if port_open(p)]
        assert not pids_naming(_ray_temp(stack))
        assert not env_file(stack.project).exists()  # clients no longer pointed at it
        assert outsider.poll() is None and port_open(port)
        status = run_cli("stack", "status", "--project-dir", str(stack.project))
        assert status.returncode == 1
        assert all(row[0] == "stopped" for row in _status_rows(status.stdout).values())
    finally:
        outsider.terminate()
        outsider.wait(15)
