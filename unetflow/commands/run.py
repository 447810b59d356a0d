"""`unetflow run | train | validate`: the end-to-end pipeline and config checks."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import yaml

from unetflow.commands.common import add_config_args, config_from_args


def _print_result(result: dict, project_dir: Path) -> None:
    metrics = result["test_metrics"]
    print("\n=== unetflow finished ===")
    print(f"data version:   {result['data_version']} (DVC, {project_dir / 'dvc.lock'})")
    print(f"test Dice/IoU:  {metrics['test_dice']:.4f} / {metrics['test_iou']:.4f}")
    print(f"MLflow run:     {result['run_id']}")
    if result.get("reused"):
        print("training:       reused: same config and data as an earlier run")
    # The registry's state after this run: a reused run's report may be out of date.
    champion = "  (@champion)" if result.get("champion_version") == result["version"] else ""
    print(f"model version:  models:/{result['registered_name']}/{result['version']}{champion}")
    print(f"checkpoints:    {result['storage_path']}/{result['ray_run_name']}")
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        store = project_dir.resolve() / ".unetflow" / "mlflow.db"
        print(f"look at it:     .venv/bin/mlflow ui --backend-store-uri sqlite:///{store}")
    print(
        f"load it:        mlflow.pyfunc.load_model('models:/{result['registered_name']}@champion')"
    )


def _flows():
    # Prefect's import is slow: only when a flow runs. No usage telemetry by default.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows import params, pipeline

    return params, pipeline


def cmd_run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    params, flows = _flows()
    result = flows.pipeline(params.PipelineParams(project_dir=str(args.project_dir), config=cfg))
    _print_result(result, args.project_dir)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    params, flows = _flows()
    result = flows.train(params.TrainParams(project_dir=str(args.project_dir), config=cfg))
    _print_result(result, args.project_dir)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), end="")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="the end-to-end pipeline: DVC data -> Ray Train -> MLflow")
    add_config_args(run)
    run.set_defaults(func=cmd_run)
    train = sub.add_parser("train", help="train one config on the current data version")
    add_config_args(train)
    train.set_defaults(func=cmd_train)
    validate = sub.add_parser("validate", help="check a config and print it fully resolved")
    add_config_args(validate)
    validate.set_defaults(func=cmd_validate)
