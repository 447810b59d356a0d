"""`unetflow deploy | serve`: Prefect deployments with their schedules."""

from __future__ import annotations

import argparse
import os

from flows import DEFAULT_POOL
from unetflow.errors import UsageError
from unetflow_cli.common import add_project_arg


def _require_server() -> None:
    if not os.environ.get("PREFECT_API_URL"):
        raise UsageError(
            "PREFECT_API_URL is not set: deployments live on a Prefect server; start one "
            "(unetflow stack up starts one and sets it; or prefect server start and "
            "export PREFECT_API_URL=http://127.0.0.1:4200/api)"
        )


def cmd_deploy(args: argparse.Namespace) -> int:
    _require_server()
    from flows.deployments import deploy_all

    deploy_all(args.project_dir, args.pool)
    print(f"start a worker: prefect worker start --pool {args.pool}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    _require_server()
    from flows.deployments import serve_all

    serve_all(args.project_dir)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    deploy = sub.add_parser("deploy", help="create every deployment on a process work pool")
    add_project_arg(deploy)
    deploy.add_argument("--pool", default=DEFAULT_POOL, help="process work pool name")
    deploy.set_defaults(func=cmd_deploy)
    serve = sub.add_parser("serve", help="serve every deployment from this process")
    add_project_arg(serve)
    serve.set_defaults(func=cmd_serve)
