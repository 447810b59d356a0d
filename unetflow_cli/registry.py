"""`unetflow promote | rollback | lineage`: the model registry from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from unetflow_cli.common import add_project_arg

DEFAULT_MODEL = "unet-seg"


def _add_model_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"registered model name (default: {DEFAULT_MODEL})",
    )


def cmd_promote(args: argparse.Namespace) -> int:
    from unetflow.promotion import evaluate_and_promote

    print(f"evaluating {args.model} v{args.candidate} against the champion on the test split...")
    decision = evaluate_and_promote(
        args.model,
        args.candidate,
        args.project_dir,
        margin=args.margin,
        min_dice=args.min_dice,
        data_dir=args.data,
    )
    print(decision.markdown(), end="")
    return 0 if decision.promoted else 1


def cmd_rollback(args: argparse.Namespace) -> int:
    from unetflow.promotion import rollback

    result = rollback(args.model, args.project_dir)
    demoted = f" (was v{result.demoted})" if result.demoted else ""
    print(f"{result.model_name}: champion is v{result.restored} again{demoted}")
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    from unetflow.lineage import format_lineage, trace

    print(format_lineage(trace(args.model_uri, args.project_dir, args.download_to)))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    promote = sub.add_parser(
        "promote", help="compare a version with the champion on the test split; promote if better"
    )
    promote.add_argument("--candidate", required=True, help="model version to evaluate, e.g. 3")
    _add_model_arg(promote)
    promote.add_argument(
        "--margin",
        type=float,
        default=0.0,
        help="promote when the 95%% CI lower bound of the Dice gain is above this (default 0)",
    )
    promote.add_argument(
        "--min-dice",
        type=float,
        default=0.5,
        help="absolute gate: minimum mean test Dice of the candidate (default 0.5)",
    )
    promote.add_argument(
        "--data",
        type=Path,
        default=None,
        help="prepared data set whose test split judges both (default: data/prepared)",
    )
    add_project_arg(promote)
    promote.set_defaults(func=cmd_promote)

    rollback = sub.add_parser("rollback", help="make previous-champion the champion again")
    _add_model_arg(rollback)
    add_project_arg(rollback)
    rollback.set_defaults(func=cmd_rollback)

    lineage = sub.add_parser(
        "lineage", help="print a model's chain back to code and data, and how to reproduce it"
    )
    lineage.add_argument("model_uri", help="models:/NAME/VERSION or models:/NAME@ALIAS")
    lineage.add_argument(
        "--download-to",
        type=Path,
        default=None,
        help="folder for the logged config.yaml (default: .unetflow/lineage/NAME-vN/)",
    )
    add_project_arg(lineage)
    lineage.set_defaults(func=cmd_lineage)
