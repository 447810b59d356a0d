"""`unetflow data prepare | push | pull | status | remote | checkout`: versioned data.

The data pipeline is dvc.yaml (ingest -> prepare -> stats) driven by params.yaml; the
remote is set in `.dvc/config.local` (never tracked), credentials come from the
environment or AWS profiles.
"""

from __future__ import annotations

import argparse

from unetflow import dvc_data
from unetflow_cli.common import add_project_arg


def cmd_prepare(args: argparse.Namespace) -> int:
    dvc_data.ensure_repo(args.project_dir)
    dvc_data.reproduce_stages(args.project_dir, args.stage, force_ingest=args.refresh)
    print(f"data version: {dvc_data.data_version(args.project_dir)}")
    if args.push:
        dvc_data.push(args.project_dir, args.remote)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    dvc_data.ensure_repo(args.project_dir)
    dvc_data.push(args.project_dir, args.remote, deadline_s=args.retry_for)
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    dvc_data.ensure_repo(args.project_dir)
    dvc_data.pull(args.project_dir, args.remote, deadline_s=args.retry_for)
    return 0


def cmd_checkout(args: argparse.Namespace) -> int:
    dvc_data.parse_version(args.version)  # a typo fails before any DVC work
    dvc_data.ensure_repo(args.project_dir)
    print(dvc_data.ensure_version(args.project_dir, args.version))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    dvc_data.ensure_repo(args.project_dir)
    try:
        version = dvc_data.data_version(args.project_dir)
    except dvc_data.DvcError:
        version = "none yet (run `unetflow data prepare`)"
    print(f"data version: {version}")
    print("workspace vs dvc.lock:")
    print(_indent(dvc_data.status(args.project_dir)))
    if not args.local_only:
        print("cache vs remote:")
        print(_indent(dvc_data.status(args.project_dir, cloud=True, remote=args.remote)))
    return 0


def cmd_remote(args: argparse.Namespace) -> int:
    dvc_data.set_remote(args.project_dir, args.url, args.endpoint, args.name)
    where = f" (endpoint {args.endpoint})" if args.endpoint else ""
    print(f"default DVC remote {args.name!r} -> {args.url}{where}, in .dvc/config.local")
    return 0


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in (text or "up to date").splitlines())


def _common(parser: argparse.ArgumentParser, remote: bool = True) -> None:
    add_project_arg(parser)
    if remote:
        parser.add_argument("--remote", help="DVC remote name (default: the default remote)")


def _retry(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--retry-for",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="keep retrying network failures this long (default: 120)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="versioned data: prepare, push, pull, status (DVC)")
    cmds = data.add_subparsers(dest="data_command", required=True)

    prepare = cmds.add_parser("prepare", help="run the data pipeline (only what changed)")
    _common(prepare)
    prepare.add_argument("--stage", help="a stage of dvc.yaml (default: all)")
    prepare.add_argument(
        "--refresh", action="store_true", help="re-read the source even if params are unchanged"
    )
    prepare.add_argument("--push", action="store_true", help="push to the remote afterwards")
    prepare.set_defaults(func=cmd_prepare)

    push = cmds.add_parser("push", help="upload the data versions to the remote")
    _common(push)
    _retry(push)
    push.set_defaults(func=cmd_push)

    pull = cmds.add_parser("pull", help="download the data recorded in dvc.lock")
    _common(pull)
    _retry(pull)
    pull.set_defaults(func=cmd_pull)

    checkout = cmds.add_parser("checkout", help="materialise one data version by its md5")
    _common(checkout, remote=False)
    checkout.add_argument("version", help="DVC md5 of the prepared data (from dvc.lock/MLflow)")
    checkout.set_defaults(func=cmd_checkout)

    status = cmds.add_parser("status", help="data version; what changed; what is not pushed")
    _common(status)
    status.add_argument("--local-only", action="store_true", help="skip the remote check")
    status.set_defaults(func=cmd_status)

    remote = cmds.add_parser("remote", help="set the default remote (in .dvc/config.local)")
    add_project_arg(remote)
    remote.add_argument("url", help="s3://bucket/prefix or a folder")
    remote.add_argument("--endpoint", help="S3 endpoint URL (MinIO, Ceph; default: AWS)")
    remote.add_argument("--name", default="storage", help="remote name (default: storage)")
    remote.set_defaults(func=cmd_remote)
