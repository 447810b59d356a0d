"""`unetflow tune`: a Ray Tune search over a space YAML (hpo, nas, losses), or --resume."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from pydantic import ValidationError

from tune.search import SearchConfig, SearchResult, resume_search, run_search, storage_root
from unetflow.config import ExperimentConfig, format_validation_error, load_config
from unetflow.errors import UsageError
from unetflow.storage import join
from unetflow_cli.common import add_config_args, config_from_args, parse_overrides

# --smoke-test: a tiny synthetic set, tiny models, one epoch (what CI runs).
SMOKE_DATA = {
    "source": "synthetic",
    "folder": None,
    "spatial_dims": 2,
    "synthetic": {"num_images": 24, "shape": [32, 32], "seed": 7},
    "split": {"fractions": [0.5, 0.25, 0.25], "seed": 7},
}
SMOKE_OVERRIDES = {
    "model.base_channels": 8,
    "model.depth": 2,
    "train.batch_size": 8,
    "scaling.num_workers": 1,
}


def register(sub: argparse._SubParsersAction) -> None:
    from tune.algorithms import SCHEDULERS, SEARCH_ALGS

    p = sub.add_parser("tune", help="search hyperparameters, architectures or losses with Ray Tune")
    add_config_args(p)  # --config base.yaml, --set, --project-dir
    p.add_argument("--space", type=Path, help="search space YAML, e.g. tune/spaces/hpo.yaml")
    p.add_argument("--num-samples", type=int, default=8, help="sampled configurations")
    p.add_argument("--search-alg", default="random", help=f"one of {list(SEARCH_ALGS)}")
    p.add_argument("--scheduler", default="asha", help=f"one of {list(SCHEDULERS)}")
    p.add_argument("--name", help="search name (storage folder, MLflow tag); default: space name")
    p.add_argument(
        "--cost",
        choices=["params", "flops", "latency_ms"],
        help="second objective (minimised): multi-objective Dice vs cost",
    )
    p.add_argument("--max-cost", type=float, help="pick the best front point within this cost")
    p.add_argument("--epochs", type=int, help="epochs per trial (default: train.epochs)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="fractions share a GPU")
    p.add_argument(
        "--max-concurrent",
        type=int,
        help="trials at once; default: all that fit (Tune queues the rest, autoscalers grow)",
    )
    p.add_argument(
        "--storage-path",
        help="Tune storage, shared by all nodes: s3://bucket/prefix or a folder "
        "(default: <project>/.unetflow/tune); pass it again with --resume",
    )
    p.add_argument(
        "--data",
        type=Path,
        help="prepared data, or an images/ + masks/ folder (default: data.path)",
    )
    p.add_argument("--retrain", action="store_true", help="retrain the best on train+val, register")
    p.add_argument("--no-track", action="store_true", help="no MLflow runs")
    p.add_argument("--resume", metavar="NAME", help="resume the search NAME after a crash")
    p.add_argument("--smoke-test", action="store_true", help="tiny data, one epoch, 2 samples")
    p.set_defaults(func=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> int:
    project = args.project_dir.resolve()
    if args.resume:
        _print(resume_search(args.resume, project, args.storage_path))
        return 0
    if args.space is None:
        raise UsageError("--space is required (e.g. tune/spaces/hpo.yaml), or --resume NAME")
    search = _search_config(args)
    base, data = config_from_args(args), args.data
    if args.smoke_test:
        base, data, search = _smoke(args, search, project)
    result = run_search(search, project, base, data.resolve() if data else None)
    _print(result)
    print(f"storage: {join(storage_root(search, project), search.name)}")
    return 0


def _search_config(args: argparse.Namespace) -> SearchConfig:
    values = {
        "name": args.name or args.space.stem,
        "space": str(args.space),
        "num_samples": args.num_samples,
        "search_alg": args.search_alg,
        "scheduler": args.scheduler,
        "cost": args.cost,
        "max_cost": args.max_cost,
        "epochs": args.epochs,
        "cpus_per_trial": args.cpus_per_trial,
        "gpus_per_trial": args.gpus_per_trial,
        "max_concurrent_trials": args.max_concurrent,
        "storage_path": args.storage_path,
        "retrain": args.retrain,
        "track": not args.no_track,
    }
    try:
        return SearchConfig.model_validate(values)
    except ValidationError as err:
        raise UsageError(format_validation_error(err, "unetflow tune")) from None


def _smoke(
    args: argparse.Namespace, search: SearchConfig, project: Path
) -> tuple[ExperimentConfig, Path, SearchConfig]:
    from unetflow.data_params import DataParams
    from unetflow.prepare import prepare

    root = project / ".unetflow" / "tune"
    data = root / "smoke-data"
    if not (data / "manifest.json").exists():
        prepare(DataParams.model_validate(SMOKE_DATA), data)
    name = f"{search.name}-smoke"
    for stale in (root / name, root / f"{name}.unetflow_search.json"):
        # A smoke test always starts fresh; it never touches a real search's folder.
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    base = load_config(args.config, {**SMOKE_OVERRIDES, **parse_overrides(args.set)})
    update = {"name": name, "epochs": 1, "num_samples": min(search.num_samples, 2)}
    return base, data, search.model_copy(update=update)


def _print(r: SearchResult) -> None:
    metric, cost = list(r.best_metrics.items())[:2]
    print(f"\n=== search {r.name}: {len(r.trials)} trials, {r.total_epochs} epochs ===")
    print(f"best trial:   {r.best_trial_id}  {metric[0]}={metric[1]:.4f}  {cost[0]}={cost[1]:.4g}")
    print("Pareto front (cost ascending):")
    print(f"  {'trial':<14} {metric[0]:>10} {cost[0]:>12}")
    for p in r.front:
        print(f"  {p.trial_id:<14} {p.dice:>10.4f} {p.cost:>12.4g}")
    if r.errors:
        print(f"errored trials: {len(r.errors)}: {r.errors[0]}")
    if r.parent_run_id:
        print(f"MLflow parent run: {r.parent_run_id}")
    if r.registered is not None:
        print(f"registered: models:/{r.registered.registered_name}/{r.registered.version}")
    print(f"resume after a crash: unetflow tune --resume {r.name}")
