"""`unetflow promote | rollback | lineage`: the model registry from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import ValidationError

from unetflow.config import ConfigError, TrackingSettings
from unetflow_cli.common import add_project_arg

DEFAULTS = TrackingSettings()
# Command-line flag -> TrackingSettings field; an unset flag keeps the settings' default.
FLAGS = {
    "model": "registered_model",
    "alias": "champion_alias",
    "previous_alias": "previous_alias",
    "min_dice": "min_dice",
    "margin": "margin",
}


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", help=f"registered model name (default: {DEFAULTS.registered_model})"
    )
    parser.add_argument(
        "--alias", help=f"alias of the version in service (default: {DEFAULTS.champion_alias})"
    )
    parser.add_argument(
        "--previous-alias",
        help=f"alias of the champion before a promotion (default: {DEFAULTS.previous_alias})",
    )


def tracking_settings(args: argparse.Namespace) -> TrackingSettings:
    """The settings the flags give, validated here at the edge."""
    given = {field: getattr(args, flag) for flag, field in FLAGS.items() if hasattr(args, flag)}
    try:
        return TrackingSettings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as err:
        e = err.errors()[0]
        flag = next(f for f, field in FLAGS.items() if field == e["loc"][0]).replace("_", "-")
        raise ConfigError(f"--{flag} {e['input']}: {e['msg']}") from None


def cmd_promote(args: argparse.Namespace) -> int:
    from unetflow.promotion import evaluate_and_promote

    settings = tracking_settings(args)
    print(
        f"evaluating {settings.registered_model} v{args.candidate} against the "
        f"@{settings.champion_alias} version on the test split..."
    )
    decision = evaluate_and_promote(
        settings, args.project_dir, candidate_version=args.candidate, data_dir=args.data
    )
    print(decision.markdown(), end="")
    return 0 if decision.promoted else 1


def cmd_rollback(args: argparse.Namespace) -> int:
    from unetflow.promotion import rollback

    result = rollback(tracking_settings(args), args.project_dir)
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
    _add_model_args(promote)
    promote.add_argument(
        "--margin",
        type=float,
        help="promote when the 95%% CI lower bound of the Dice gain is above this "
        f"(default {DEFAULTS.margin})",
    )
    promote.add_argument(
        "--min-dice",
        type=float,
        help=f"absolute gate: minimum mean test Dice of the candidate (default {DEFAULTS.min_dice})",
    )
    promote.add_argument(
        "--data",
        type=Path,
        default=None,
        help="prepared data set whose test split judges both (default: data/prepared)",
    )
    add_project_arg(promote)
    promote.set_defaults(func=cmd_promote)

    rollback = sub.add_parser("rollback", help="make the previous champion the champion again")
    _add_model_args(rollback)
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
