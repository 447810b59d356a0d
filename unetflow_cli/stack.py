"""`unetflow stack up | status | down`: the whole local stack on 127.0.0.1 in one command.

`up` writes `.unetflow/stack/env`; every other `unetflow` command reads it (see
`load_stack_env`), so `unetflow train` then logs to the stack's MLflow and trains on its
Ray cluster. Secrets (Ray token, S3 keys, database password) stay in files readable by
the owner only and are never printed.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from pydantic import ValidationError

from flows import DEFAULT_POOL
from unetflow.errors import UsageError
from unetflow.stack import Stack, StackOptions, env_file, load_env_file
from unetflow_cli.common import add_project_arg


def load_stack_env(project_dir: Path) -> list[str]:
    """Read `<project>/.unetflow/stack/env` into the environment, if it exists.

    Precedence: a variable already set in the environment wins over the file, so
    `MLFLOW_TRACKING_URI=... unetflow train` still goes where the user says.
    """
    return load_env_file(env_file(project_dir))


def _options(args: argparse.Namespace) -> StackOptions:
    if args.action != "up":
        return StackOptions(pool=DEFAULT_POOL)
    try:
        return StackOptions(
            pool=DEFAULT_POOL, timeout_s=args.timeout, ray_cpus_per_node=args.ray_cpus
        )
    except ValidationError as err:
        first = err.errors()[0]
        flag = {"timeout_s": "--timeout", "ray_cpus_per_node": "--ray-cpus"}[first["loc"][0]]
        raise UsageError(f"{flag} {first['input']!r}: {first['msg']}") from None


def _deploy(project_dir: Path, pool: str):
    def deploy(client_env: dict[str, str]) -> None:
        # The deployments go to the stack's server, whatever the shell points at.
        os.environ["PREFECT_API_URL"] = client_env["PREFECT_API_URL"]
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        from flows.deployments import deploy_all

        deploy_all(project_dir, pool)

    return deploy


def cmd_up(args: argparse.Namespace) -> int:
    began = time.monotonic()
    stack = Stack(args.project_dir, _options(args))
    started = stack.up(on_servers_ready=_deploy(args.project_dir, stack.ctx.options.pool))
    took = time.monotonic() - began
    print(f"started: {', '.join(started)} ({took:.0f}s)" if started else "already running")
    _print_status(stack)
    print(f"client settings: {env_file(args.project_dir)} (read by every unetflow command)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    stack = Stack(args.project_dir, _options(args))
    return 0 if _print_status(stack) else 1


def cmd_down(args: argparse.Namespace) -> int:
    stopped = Stack(args.project_dir, _options(args)).down()
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def _print_status(stack: Stack) -> bool:
    rows = stack.status()
    for row in rows:
        state = "healthy" if row.healthy else ("unhealthy" if row.pid else "stopped")
        pid = f"pid {row.pid}" if row.pid else ""
        print(f"{row.name:<15} {state:<10} {row.url:<40} {pid}")
    return all(row.healthy for row in rows)


def register(sub: argparse._SubParsersAction) -> None:
    stack = sub.add_parser(
        "stack", help="local PostgreSQL, S3, MLflow, Prefect and Ray on 127.0.0.1"
    )
    actions = stack.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="start what is not running, deploy the flows")
    defaults = StackOptions(pool=DEFAULT_POOL)
    up.add_argument("--timeout", type=float, default=defaults.timeout_s, help="seconds per service")
    up.add_argument(
        "--ray-cpus", type=int, default=defaults.ray_cpus_per_node, help="CPUs per Ray node"
    )
    up.set_defaults(func=cmd_up)
    status = actions.add_parser("status", help="health and URL of each service")
    status.set_defaults(func=cmd_status)
    down = actions.add_parser("down", help="stop what `up` started (data is kept)")
    down.set_defaults(func=cmd_down)
    for parser in (up, status, down):
        add_project_arg(parser)
