"""`unetflow plan DATA`: the settings a run would derive from the data, as a config file."""

from __future__ import annotations

import argparse
from pathlib import Path

from unetflow.datasets import resolve_for
from unetflow.plan import plan_yaml, planned
from unetflow_cli.common import add_config_args, config_from_args


def cmd_plan(args: argparse.Namespace) -> int:
    args.set = [*args.set, f"data.path={args.data}"]
    cfg = config_from_args(args)
    project_dir = args.project_dir
    _, result, memory_why = planned(project_dir, cfg, force=True)
    if result is None:
        resolve_for(project_dir, cfg)  # says in one line what is wrong with DATA
        raise FileNotFoundError(f"{args.data}: no prepared data set or images/ + masks/ there")
    text = plan_yaml(cfg, result, memory_why)
    if args.output is None:
        print(text, end="")
    else:
        args.output.write_text(text)
        print(f"plan written to {args.output}; train with --config {args.output}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    plan = sub.add_parser(
        "plan",
        help="derive patch, batch, depth, pooling, normalisation, steps and epochs from DATA",
        description="Print (or write) the settings `unetflow train` would derive from the "
        "data's fingerprint, each with the reason, as a config to edit and pass back with "
        "--config. Values set by --config/--set are kept, not planned.",
    )
    plan.add_argument("data", help="prepared data set (folder or s3:// URI) or images/ + masks/")
    plan.add_argument("-o", "--output", type=Path, help="write the YAML here instead of stdout")
    add_config_args(plan)
    plan.set_defaults(func=cmd_plan)
