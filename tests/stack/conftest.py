"""One local stack (`unetflow stack up` in a fresh project folder) shared by the stack
tests: starting it is the cost that matters. `down` at the end of the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, make_raw_folder
from unetflow.stack.state import StackState, env_file, read_env_file, stack_root

# Client settings the test process may carry: the CLI must take the stack's from its file.
CLIENT_VARS = ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "RAY_ADDRESS", "RAY_AUTH_TOKEN")


def run_cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """`unetflow ARGS` in a fresh process, with no client settings in its environment."""
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_VARS}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "unetflow_cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


@dataclass(frozen=True)
class StackUnderTest:
    project: Path
    up_output: str  # stdout of the first `up`
    up_seconds: float

    def env(self) -> dict[str, str]:
        return read_env_file(env_file(self.project))

    def state(self) -> StackState:
        return StackState.load(stack_root(self.project))

    def logs(self) -> str:
        """Every service log's tail, for a failure message."""
        out = []
        for log in sorted((stack_root(self.project) / "logs").glob("*.log")):
            out.append(f"--- {log.name}\n" + "".join(log.read_text(errors="replace")[-2000:]))
        return "\n".join(out)


@pytest.fixture(scope="package")
def stack() -> StackUnderTest:
    # Directly under /tmp, open to others: as root, PostgreSQL runs as user postgres and
    # must reach its data folder (pytest's tmp folders are private to root).
    root = Path(tempfile.mkdtemp(prefix="unetflow-stack-test-", dir="/tmp"))
    root.chmod(0o755)
    project = root / "project"
    project.mkdir()
    make_raw_folder(project, n=16)
    began = time.monotonic()
    up = run_cli("stack", "up", "--project-dir", str(project))
    handle = StackUnderTest(project, up.stdout, time.monotonic() - began)
    try:
        assert up.returncode == 0, f"stack up failed:\n{up.stdout}\n{up.stderr}\n{handle.logs()}"
        yield handle
    finally:
        run_cli("stack", "down", "--project-dir", str(project))
        shutil.rmtree(root, ignore_errors=True)
