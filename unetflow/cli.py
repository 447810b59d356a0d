"""`unetflow`: the command line. Every command validates its input first and fails with
one line that names the file, field or value to fix.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from unet_core.data import DataError
from unetflow.config import ConfigError, load_config
from unetflow.dvc_data import DvcError


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. train.epochs=5")
        out[key] = yaml.safe_load(value)
    return out


def _print_result(result: dict, project_dir: Path) -> None:
    metrics = result["test_metrics"]
    print("\n=== unetflow run finished ===")
    print(f"data version:   {result['data_version']} (DVC, {project_dir / 'dvc.lock'})")
    print(f"test Dice/IoU:  {metrics['test_dice']:.4f} / {metrics['test_iou']:.4f}")
    print(f"MLflow run:     {result['run_id']}")
    print(f"model version:  models:/{result['registered_name']}/{result['version']}"
          + ("  (now @champion)" if result["became_champion"] else ""))  # fmt: skip
    print(f"checkpoints:    {result['storage_path']}/{result['ray_run_name']}")
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        store = project_dir.resolve() / ".unetflow" / "mlflow.db"
        print(f"look at it:     .venv/bin/mlflow ui --backend-store-uri sqlite:///{store}")
    print(
        f"load it:        mlflow.pyfunc.load_model('models:/{result['registered_name']}@champion')"
    )


def cmd_run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, _overrides(args.set))
    # Prefect's import is slow: only when needed. No usage telemetry by default.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.pipeline import pipeline

    result = pipeline(config=cfg, project_dir=str(args.project_dir))
    _print_result(result, args.project_dir)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, _overrides(args.set))
    print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unetflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, help="experiment YAML (default: embedded defaults)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set train.epochs=5")  # fmt: skip
        p.add_argument("--project-dir", type=Path, default=Path("."),
                       help="folder holding dvc.yaml and params.yaml (default: .)")  # fmt: skip

    run = sub.add_parser("run", help="the end-to-end pipeline: DVC data -> Ray Train -> MLflow")
    common(run)
    run.set_defaults(func=cmd_run)
    train = sub.add_parser("train", help="train one config (same pipeline, data stage cached)")
    common(train)
    train.set_defaults(func=cmd_run)
    validate = sub.add_parser("validate", help="check a config and print it resolved")
    common(validate)
    validate.set_defaults(func=cmd_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, DataError, DvcError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
