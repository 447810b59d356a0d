"""The driver side of a search: build or restore the Tuner, run it, summarise, log."""

from __future__ import annotations

import json
import math
import posixpath
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune import CheckpointConfig, FailureConfig, RunConfig, TuneConfig, Tuner
from ray.tune.search import Searcher

from tune import algorithms, mlflow_logging
from tune.pareto import TrialPoint, choose, log_front, pareto_front
from tune.search_config import (
    STATE_FILE,
    SearchConfig,
    SearchResult,
    SearchTracking,
    TrialSetup,
    storage_root,
)
from tune.space import SearchSpace, resolve_config
from tune.trainable import original_folder, train_trial, trial_dirname
from unetflow import storage
from unetflow.config import ExperimentConfig, tracked_params
from unetflow.errors import UsageError


def execute(
    search: SearchConfig,
    space: SearchSpace,
    base: ExperimentConfig,
    data_dir: Path,
    project_dir: Path,
    resume: bool,
) -> SearchResult:
    from unetflow.ray_train import ensure_ray, require_shared_storage

    root = storage_root(search, project_dir)
    path = storage.join(root, search.name)  # a URI stays a URI (s3://...)
    tune_path, filesystem = storage.ray_storage(path)
    exists = Tuner.can_restore(tune_path, storage_filesystem=filesystem)
    if resume and not exists:
        raise UsageError(f"search {search.name!r} has no Tune state in {path}; start it anew")
    if not resume and exists:
        raise UsageError(
            f"search {search.name!r} already exists in {path}; "
            f"resume it with --resume {search.name} or pick another --name"
        )
    ensure_ray()  # after the checks: a refused search costs no cluster start-up
    require_shared_storage(root, fix="pass --storage-path s3://BUCKET/PREFIX")
    save_state(storage.join(root, f"{search.name}.{STATE_FILE}"), search, base, data_dir)
    tracking = _start_tracking(search, space, base, project_dir) if search.track else None
    trainable = _trainable(search, space, base, data_dir, tracking, path)
    try:
        if resume:
            tuner = Tuner.restore(
                tune_path, trainable=trainable, resume_errored=True, storage_filesystem=filesystem
            )
        else:
            tuner = _new_tuner(search, space, base, trainable, root)
        grid = tuner.fit()
    except BaseException:
        if tracking:
            mlflow_logging.finish(tracking.uri, tracking.parent_run_id, "FAILED")
        raise
    result = _summarise(search, space, base, grid, tracking, path)
    if search.retrain:
        from tune.retrain import retrain_best

        result.registered = retrain_best(result, project_dir, data_dir)
    return result


def _trainable(
    search: SearchConfig,
    space: SearchSpace,
    base: ExperimentConfig,
    data_dir: Path,
    tracking: SearchTracking | None,
    path: str,
) -> Any:
    setup = TrialSetup(
        base=base.model_dump_json(),
        specs={k: v.model_dump(mode="json") for k, v in space.params.items()},
        data_dir=str(data_dir),
        tracking=tracking,
        latency=search.cost == "latency_ms",
        storage=storage.join(path, "train"),
    )
    if base.scaling.num_workers > 1:
        # The trial only drives a TorchTrainer; its workers hold the CPUs/GPUs. Tune refuses
        # an empty request, so the driver asks for a token amount of memory (1 MiB) only.
        resources = {"cpu": 0, "memory": 2**20}
    else:
        resources = {"cpu": search.cpus_per_trial, "gpu": search.gpus_per_trial}
    return tune.with_resources(tune.with_parameters(train_trial, setup=setup), resources)


def _new_tuner(
    search: SearchConfig, space: SearchSpace, base: ExperimentConfig, trainable: Any, root: str
) -> Tuner:
    searcher, scheduler = algorithms.build(search, space)
    param_space = space.to_tune()
    grid_size = math.prod(len(p.values) for p in space.params.values() if p.dist == "grid")
    trials = search.num_samples * grid_size
    root_path, filesystem = storage.ray_storage(root)
    return Tuner(
        trainable,
        param_space=param_space,
        tune_config=TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=search.num_samples,
            # A generator (random, grid) holds its own cap (`algorithms._random`).
            max_concurrent_trials=(
                max_concurrent(search, base, trials) if isinstance(searcher, Searcher) else None
            ),
            trial_dirname_creator=_trial_dirname,
            reuse_actors=search.reuse_actors,
        ),
        run_config=RunConfig(
            name=search.name,
            storage_path=root_path,
            storage_filesystem=filesystem,
            # Tune snapshots its experiment state (what --resume restores) when a trial's
            # old checkpoint is deleted, else every 10 s; its record can lag the newest
            # checkpoint by one. With 1 kept, that recorded checkpoint was already deleted
            # and the resumed trial failed (seen in a full run); 2 keeps it, and the trial
            # itself resumes from its newest whole one (tune.trainable.newest_state).
            # PBT exploits other trials' checkpoints: keep more so none vanish too early.
            checkpoint_config=CheckpointConfig(num_to_keep=4 if search.scheduler == "pbt" else 2),
            failure_config=FailureConfig(max_failures=search.max_failures),
            verbose=1,
        ),
    )


def _trial_dirname(trial: Any) -> str:
    return trial_dirname(trial.trial_id)


def _start_tracking(
    search: SearchConfig, space: SearchSpace, base: ExperimentConfig, project_dir: Path
) -> SearchTracking:
    import mlflow

    from unetflow import tracking

    uri = tracking.tracking_uri(project_dir)
    mlflow.set_tracking_uri(uri)
    experiment_id = tracking.ensure_experiment(base.tracking.experiment, project_dir)
    tags = {
        "unetflow.search_alg": search.search_alg,
        "unetflow.scheduler": search.scheduler,
        "unetflow.search_space": space.name,
    }
    parent = mlflow_logging.parent_run(uri, experiment_id, search.name, tags)
    client = mlflow.MlflowClient(tracking_uri=uri)
    params = {f"search.{k}": v for k, v in search.model_dump(mode="json").items()}
    params.update({f"base.{k}": v for k, v in tracked_params(base).items()})
    existing = client.get_run(parent).data.params
    for key, value in params.items():
        if key not in existing:
            client.log_param(parent, key, str(value)[:6000])
    return SearchTracking(uri, experiment_id, parent, search.name)


def trial_history(result: Any) -> list[dict[str, Any]]:
    """A trial's reports, oldest first (`result`: a `ray.tune.Result`).

    A trial that had no record when its driver died reports to a renamed folder,
    `trial_<id>_<4 hex>` (`tune.trainable`), after resuming from what it wrote to
    `trial_<id>`: the reports of epochs before the first new one come from there.
    """
    df = result.metrics_dataframe
    history = df.to_dict("records") if df is not None and len(df) else []
    trial_id = (result.metrics or {}).get("trial_id")
    if not history or trial_id is None:
        return history
    old = original_folder(result.path, trial_id)
    if old == result.path.rstrip("/"):
        return history
    try:
        with result.filesystem.open_input_stream(posixpath.join(old, "result.json")) as stream:
            lines = stream.read().decode().splitlines()
    except OSError:  # not there, or not yet synced when the driver died
        return history
    first = min(int(r.get("epoch", 0)) for r in history)
    earlier = [json.loads(line) for line in lines if line.strip()]
    return [r for r in earlier if int(r.get("epoch", first)) < first] + history


def _trial_rows(grid: Any, search: SearchConfig) -> list[dict[str, Any]]:
    rows = []
    for result in grid:
        history = trial_history(result)
        dice = [r[search.metric] for r in history if search.metric in r]
        best = (max(dice) if search.mode == "max" else min(dice)) if dice else None
        last = history[-1] if history else {}
        sampled = {k.removeprefix("config/"): v for k, v in (result.config or {}).items()}
        rows.append(
            {
                "trial_id": (result.metrics or {}).get("trial_id") or Path(result.path).name,
                "trial_name": Path(result.path).name,
                "config": sampled,
                "best": best,
                "epochs": len(history),
                "last": last,
                "error": str(result.error).split("\n")[0] if result.error else None,
            }
        )
    return rows


def _summarise(
    search: SearchConfig,
    space: SearchSpace,
    base: ExperimentConfig,
    grid: Any,
    tracking: SearchTracking | None,
    path: str,
) -> SearchResult:
    rows = _trial_rows(grid, search)
    cost = search.cost or "params"
    points = [
        TrialPoint(
            r["trial_id"], float(r["best"]), float(r["last"].get(cost, math.nan)), r["config"]
        )
        for r in rows
        if r["best"] is not None
    ]
    if not points:
        errors = [f"{r['trial_id']}: {r['error']}" for r in rows if r["error"]]
        raise RuntimeError(f"no trial of {search.name} reported {search.metric}; {errors[:3]}")
    front = pareto_front(points)
    sign = 1 if search.mode == "max" else -1
    best = (
        choose(front, search.max_cost) if search.cost else max(points, key=lambda p: sign * p.dice)
    )
    best_cfg = best_config_of(base, space, best.config)
    total_epochs = sum(r["epochs"] for r in rows)
    summary = {
        f"best_{search.metric}": best.dice,
        "total_epochs": total_epochs,
        "num_trials": len(rows),
        "front_size": len(front),
    }
    result = SearchResult(
        name=search.name,
        storage_path=path,
        parent_run_id=tracking.parent_run_id if tracking else None,
        best_trial_id=best.trial_id,
        best_config=best_cfg,
        best_metrics={search.metric: best.dice, cost: best.cost},
        front=front,
        trials=rows,
        total_epochs=total_epochs,
        errors=[f"{r['trial_id']}: {r['error']}" for r in rows if r["error"]],
    )
    if tracking:
        _log_summary(tracking, rows, points, front, cost, summary, best, best_cfg)
    if tracking:
        mlflow_logging.finish(tracking.uri, tracking.parent_run_id)
    return result


def _log_summary(
    tracking: SearchTracking,
    rows: list[dict[str, Any]],
    points: list[TrialPoint],
    front: list[TrialPoint],
    cost: str,
    summary: dict[str, float],
    best: TrialPoint,
    best_cfg: ExperimentConfig,
) -> None:
    """Final metrics per child run, summary + front + best config on the parent."""
    import mlflow
    import yaml

    uri, parent = tracking.uri, tracking.parent_run_id
    for r in rows:
        logger = mlflow_logging.TrialLogger(tracking, r["trial_id"], r["trial_name"])
        final = {"final_best_val_metric": r["best"], "epochs_run": r["epochs"]}
        logger.log_metrics({k: v for k, v in final.items() if v is not None}, step=r["epochs"])
        logger.finish("FAILED" if r["error"] else "FINISHED")
    client = mlflow.MlflowClient(tracking_uri=uri)
    client.log_batch(
        parent, metrics=[mlflow.entities.Metric(k, float(v), 0, 0) for k, v in summary.items()]
    )
    client.set_tag(parent, "unetflow.best_trial_id", best.trial_id)
    client.log_text(
        parent,
        yaml.safe_dump(best_cfg.model_dump(mode="json"), sort_keys=False),
        "best_config.yaml",
    )
    log_front(uri, parent, points, front, cost)


def save_state(path: str, search: SearchConfig, base: ExperimentConfig, data_dir: Path) -> None:
    """What `--resume NAME` needs to rebuild the same search (a file or an S3 object)."""
    state = {
        "search": search.model_dump(mode="json"),
        "base": base.model_dump(mode="json"),
        "data_dir": str(data_dir),
    }
    storage.write_text(path, json.dumps(state, indent=1))


ADAPTIVE_SEARCH = ("optuna", "hyperopt", "bohb")  # searchers that learn from results


def max_concurrent(
    search: SearchConfig,
    base: ExperimentConfig,
    num_trials: int,
    cluster: dict[str, float] | None = None,
) -> int | None:
    """Trials run at once; None lets Tune run all that fit and queue the rest.

    Random and grid search need no cap: Tune starts trials as resources free up, and
    on an autoscaling cluster its queued trials are what makes the cluster grow, so a
    cap taken from the cluster at start (often zero GPUs) would pin the search to one
    trial for good. Adaptive searchers (Optuna, HyperOpt, BOHB) suggest better trials
    from finished ones, so they get as many as fit the cluster now, or None when
    nothing fits yet (the autoscaler adds nodes; set --max-concurrent to cap it).

    Args:
        cluster: total resources, as `ray.cluster_resources()` (read when None).
    """
    if search.max_concurrent_trials is not None:
        return search.max_concurrent_trials
    if search.search_alg not in ADAPTIVE_SEARCH:
        return None
    if cluster is None:
        import ray

        cluster = ray.cluster_resources()
    cpus, gpus = trial_footprint(search, base)
    fits = math.floor(cluster.get("CPU", 0) / cpus) if cpus else num_trials
    if gpus:
        fits = min(fits, math.floor(cluster.get("GPU", 0) / gpus))
    return min(fits, num_trials) if fits >= 1 else None


def trial_footprint(search: SearchConfig, base: ExperimentConfig) -> tuple[float, float]:
    """CPUs and GPUs one trial occupies (all workers of a multi-worker trial)."""
    s = base.scaling
    if s.num_workers > 1:
        return s.num_workers * s.cpus_per_worker, s.num_workers * s.gpus_per_worker * s.use_gpu
    return search.cpus_per_trial, search.gpus_per_trial


def best_config_of(base: ExperimentConfig, space: SearchSpace, sampled: dict) -> ExperimentConfig:
    return resolve_config(base, sampled, space.params)
