"""`up`, `status` and `down` of a project's local stack.

Services start in phases (each waits for the one before): PostgreSQL, S3 and the Ray
head have no dependency; MLflow and Prefect need the database; the Prefect worker needs
the deployments' pool, which `on_servers_ready` creates; the Ray worker needs the head.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from unetflow.stack.base import Service, StackContext, StackError, StackOptions
from unetflow.stack.mlflow import MlflowServer
from unetflow.stack.net import log_tail
from unetflow.stack.postgres import Postgres
from unetflow.stack.prefect import PrefectServer, PrefectWorker
from unetflow.stack.ray import RayHead, RayWorker
from unetflow.stack.s3 import S3
from unetflow.stack.state import StackState, env_file, stack_root, write_env_file

START_ATTEMPTS = 5  # starts per service and `up` before giving up
SERVERS_READY = 2  # phases before this one hold the servers; the workers follow


def _hint(log: Path) -> str:
    return f"; what started stays up (unetflow stack down stops it){log_tail(log)}"


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    healthy: bool
    url: str
    pid: int | None


class Stack:
    """The services of one project, in start order (`phases`)."""

    def __init__(self, project_dir: Path, options: StackOptions) -> None:
        self.root = stack_root(project_dir)
        self.ctx = StackContext(
            project_dir.resolve(), self.root, StackState.load(self.root), options
        )
        pg, s3 = Postgres(self.ctx), S3(self.ctx)
        head = RayHead(self.ctx, node_extra_env=s3.env())
        prefect = PrefectServer(self.ctx, pg)
        self.s3 = s3
        self.phases: tuple[tuple[Service, ...], ...] = (
            (pg, s3, head),
            (MlflowServer(self.ctx, pg, s3), prefect),
            (PrefectWorker(self.ctx, prefect, self.client_env),),
            # Last and alone: a Ray node that starts beside busy Python start-ups can
            # miss Ray's own registration deadline.
            (RayWorker(self.ctx, head),),
        )

    @property
    def services(self) -> list[Service]:
        return [service for phase in self.phases for service in phase]

    def client_env(self) -> dict[str, str]:
        """What a client (CLI, flow run) needs to use the stack; holds secrets."""
        env: dict[str, str] = {}
        for service in self.services:
            env |= service.env()
        return env

    def up(self, on_servers_ready: Callable[[dict[str, str]], None] | None = None) -> list[str]:
        """Start what is not running and wait until healthy; returns the names started.

        `on_servers_ready(client_env)` runs once the servers are healthy (before the
        workers start) when anything started.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        started: list[str] = []
        for i, phase in enumerate(self.phases):
            if i == SERVERS_READY and started and on_servers_ready:
                on_servers_ready(self.client_env())
            started += self._start_phase(phase)
        # moto forgets its buckets when it restarts, also under a running MLflow server.
        self.s3.ensure_bucket(self.ctx.options.bucket)
        write_env_file(env_file(self.ctx.project_dir), self.client_env())
        return started

    def _start_phase(self, phase: tuple[Service, ...]) -> list[str]:
        todo = [s for s in phase if not self.ctx.running(s.name)]
        try:
            for service in todo:
                service.start()
        finally:
            self.ctx.state.save(self.root)  # recorded even if a start failed: down finds it
        with ThreadPoolExecutor(len(phase)) as pool:
            list(pool.map(self._wait_healthy, phase))
        self.ctx.state.save(self.root)
        return [s.name for s in todo]

    def _wait_healthy(self, service: Service) -> None:
        """Wait until `service` is healthy; start it again when it exits on the way.

        Ray gives a node 30 s to register, hard-coded: on a loaded machine a node can
        miss that and exit, and a second try usually makes it.
        """
        log = self.ctx.log(service.name)
        deadline = time.monotonic() + self.ctx.options.timeout_s
        attempts = 1
        while not service.healthy():
            if not self.ctx.running(service.name):
                if attempts >= START_ATTEMPTS:
                    raise StackError(f"{service.name} exited during start-up{_hint(log)}")
                attempts += 1
                service.stop()  # what the failed attempt left behind
                log.replace(log.with_name(f"{log.name}.{attempts - 1}"))  # keep its story
                service.start()
                deadline = time.monotonic() + self.ctx.options.timeout_s  # a fresh start
            if time.monotonic() > deadline:
                raise StackError(
                    f"{service.name} not healthy after {self.ctx.options.timeout_s:.0f}s"
                    f"{_hint(log)}"
                )
            time.sleep(0.5)

    def status(self) -> list[ServiceStatus]:
        out = []
        for service in self.services:
            process = self.ctx.state.processes.get(service.name)
            running = process is not None and process.alive()
            out.append(
                ServiceStatus(
                    service.name,
                    running and service.healthy(),
                    service.url() if running else "-",
                    process.pid if running else None,
                )
            )
        return out

    def down(self) -> list[str]:
        """Stop what `up` started (last phase first); returns the names stopped."""
        stopped = []
        env_file(self.ctx.project_dir).unlink(missing_ok=True)
        for service in reversed(self.services):
            if self.ctx.running(service.name):
                stopped.append(service.name)
            service.stop()
            self.ctx.state.save(self.root)
        return stopped
