"""`unetflow run | train | validate`: the end-to-end pipeline and config checks."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from unetflow.config import ExperimentConfig
from unetflow.data_params import read_params
from unetflow.datasets import FOLDER_VERSION, resolve_for
from unetflow.dvc_data import PREPARED, parse_version
from unetflow.errors import UsageError
from unetflow.plan import planned
from unetflow_cli.common import add_config_args, add_no_plan_arg, config_from_args

if TYPE_CHECKING:
    from flows.outcomes import TrainOutcome


def _print_result(
    result: TrainOutcome, project_dir: Path, server_uri: str | None, alias: str
) -> None:
    report = result.report
    metrics, model, version = report.test_metrics, report.registered_name, result.data_version
    source = (
        "content hash of the data.path folder"
        if version.startswith(FOLDER_VERSION)
        else f"DVC, {project_dir / 'dvc.lock'}"
    )
    print("\n=== unetflow finished ===")
    print(f"data version:   {version} ({source})")
    print(f"test Dice/IoU:  {metrics['test_dice']:.4f} / {metrics['test_iou']:.4f}")
    print(f"MLflow run:     {report.run_id}")
    if result.reused:
        print("training:       reused: same config and data as an earlier run")
    # The registry's state after this run: a reused run's report may be out of date.
    champion = f"  (@{alias})" if result.champion_version == report.version else ""
    print(f"model version:  models:/{model}/{report.version}{champion}")
    print(f"checkpoints:    {report.storage_path}/{report.ray_run_name}")
    if not server_uri:
        store = project_dir.resolve() / ".unetflow" / "mlflow.db"
        print(f"look at it:     .venv/bin/mlflow ui --backend-store-uri sqlite:///{store}")
    print(f"load it:        mlflow.pyfunc.load_model('models:/{model}@{alias}')")


def _flows():
    # Prefect's import is slow: only when a flow runs. No usage telemetry by default.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The temporary server of a run without PREFECT_API_URL: 20 s is too short on a busy
    # 2-core machine (the run then fails before it starts).
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    from flows import params, pipeline

    return params, pipeline


def check_inputs(cfg: ExperimentConfig, project_dir: Path) -> None:
    """Refuse what the flow would fail on, before Prefect, MLflow or Ray start.

    Data the DVC stages produce inside the flow (the default `data/prepared`) is
    checked there, on the driver, before Ray; here its source, params.yaml, is.
    A raw images/ + masks/ folder is prepared here (atomically, once per content),
    so the flow finds it ready.
    """
    if not project_dir.is_dir():
        raise UsageError(f"--project-dir {project_dir}: no such folder")
    if cfg.data.version:
        parse_version(cfg.data.version)  # fetched from DVC inside the flow
        return
    path = (project_dir / cfg.data.path).resolve()
    if path == (project_dir / PREPARED).resolve():
        for name in ("dvc.yaml", "params.yaml"):
            if not (project_dir / name).is_file():
                raise UsageError(
                    f"{project_dir / name}: missing; data.path {cfg.data.path!r} is made by "
                    "the DVC stages: copy dvc.yaml and params.yaml from the unetflow "
                    "repository, or point data.path at your data"
                )
        read_params(project_dir / "params.yaml")
        return
    # Checked as it will train: with the settings the plan derives from the data.
    resolve_for(project_dir, planned(project_dir, cfg)[0])


def _run_flow(args: argparse.Namespace, pick: Callable[[Any, Any], tuple[Any, Any]]) -> int:
    """Validate the config, run the flow `pick(flows, params)` names, print the summary."""
    cfg = config_from_args(args)
    check_inputs(cfg, args.project_dir)
    _check_cluster(cfg, args.project_dir)
    # Read before the flow runs: mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI.
    server_uri = os.environ.get("MLFLOW_TRACKING_URI")
    params, flows = _flows()
    flow, params_cls = pick(flows, params)
    result = flow(**params_cls(project_dir=str(args.project_dir), config=cfg).parameters())
    _print_result(result, args.project_dir, server_uri, cfg.tracking.champion_alias)
    return 0


def _check_cluster(cfg: Any, project_dir: Path) -> None:
    """On a cluster (`RAY_ADDRESS`), refuse local checkpoint storage before the flow or
    any Ray worker starts: a one-line error and exit 2, not a failed flow run."""
    if not os.environ.get("RAY_ADDRESS"):
        return  # a local Ray is one node
    from unetflow.ray_train import ensure_ray, require_shared_storage
    from unetflow.training import storage_path

    ensure_ray()
    require_shared_storage(storage_path(cfg, project_dir), cfg.checkpoint.storage_shared)


def cmd_run(args: argparse.Namespace) -> int:
    return _run_flow(args, lambda flows, params: (flows.pipeline, params.PipelineParams))


def cmd_train(args: argparse.Namespace) -> int:
    if args.submit:
        return _submit(args)
    return _run_flow(args, lambda flows, params: (flows.train, params.TrainParams))


def _submit(args: argparse.Namespace) -> int:
    """`train --submit`: the driver runs as a Ray Job on the cluster; this only follows it."""
    from unetflow import jobs

    outcome = jobs.submit_for(config_from_args(args), args.project_dir)
    if outcome.status != "SUCCEEDED":
        print(
            f"error: Ray job {outcome.submission_id} ended {outcome.status}; its output is "
            f"above; rerun this command to resume it from its last checkpoint",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), end="")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="the end-to-end pipeline: DVC data -> Ray Train -> MLflow")
    add_config_args(run)
    add_no_plan_arg(run)
    run.set_defaults(func=cmd_run)
    train = sub.add_parser("train", help="train one config on the current data version")
    add_config_args(train)
    add_no_plan_arg(train)
    train.add_argument(
        "--submit",
        action="store_true",
        help="run the driver as a Ray Job on the RAY_ADDRESS cluster (survives this "
        "process); rerunning attaches to it or resumes it",
    )
    train.set_defaults(func=cmd_train)
    validate = sub.add_parser("validate", help="check a config and print it fully resolved")
    add_config_args(validate)
    validate.set_defaults(func=cmd_validate)
