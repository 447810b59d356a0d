"""What every stack service shares: the `Service` protocol and the run-time context."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from unetflow.errors import UsageError
from unetflow.stack.net import LOOPBACK, free_port
from unetflow.stack.process import ProcessRecord, stop_group
from unetflow.stack.state import StackState


class StackError(UsageError):
    """A stack service could not start or be reached; the message names what to do."""


class StackOptions(BaseModel):
    """Knobs of `unetflow stack up`; the defaults fit a laptop."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timeout_s: float = Field(240, gt=0, description="seconds each service may take to be healthy")
    ray_cpus_per_node: int = Field(1, ge=1, description="CPUs the Ray head and worker each offer")
    bucket: str = Field("unetflow-mlflow", min_length=3, description="S3 bucket of MLflow")
    pool: str = Field(description="Prefect work pool the worker polls (flows.DEFAULT_POOL)")


@dataclass
class StackContext:
    """One project's stack: where its files go, what `up` recorded, how it is set up."""

    project_dir: Path
    root: Path  # <project>/.unetflow/stack
    state: StackState
    options: StackOptions

    def log(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def port(self, name: str) -> int:
        """The port recorded for `name` when it is free again, else a new free one."""
        recorded = self.state.ports.get(name)
        port = recorded if recorded and _bindable(recorded) else free_port()
        self.state.ports[name] = port
        return port

    def record(self, name: str, process: ProcessRecord) -> None:
        self.state.processes[name] = process

    def running(self, name: str) -> bool:
        """Whether the process `up` recorded for `name` is still ours and alive."""
        process = self.state.processes.get(name)
        return process is not None and process.alive()

    def stop_recorded(self, name: str, **kwargs: object) -> None:
        process = self.state.processes.pop(name, None)
        if process is not None:
            stop_group(process, **kwargs)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


# Client settings a user may have exported for other servers: a stack service must not
# follow them (a Prefect server with PREFECT_API_URL set talks to that other server).
_FOREIGN = ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS", "PGPASSWORD")


def base_env(**extra: str) -> dict[str, str]:
    """The environment of a service process: ours, less other servers' addresses."""
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN and not k.startswith("AWS_")}
    return {**env, **extra}


class Service(Protocol):
    """A local service of the stack. `start` returns once the process is launched; the
    caller waits for `healthy`. `env` holds what clients need to reach it."""

    name: str

    def start(self) -> None: ...

    def healthy(self) -> bool: ...

    def stop(self) -> None: ...

    def url(self) -> str: ...

    def env(self) -> dict[str, str]: ...
