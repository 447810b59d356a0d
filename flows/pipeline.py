"""Prefect flows. Thin on purpose: typed parameters in, library calls, artifacts out.

Each flow takes the fields of its parameter model (flows/params.py) as keyword arguments,
a config as its sections: `train(**TrainParams(config=cfg).parameters())`.

data_prep             DVC stages -> data version (push to the remote)
train                 data version -> Ray Train -> MLflow model version
tune                  Ray Tune search -> best config, Pareto front
evaluate_and_promote  candidate vs champion on the frozen test split
pipeline              data_prep -> [tune] -> train -> evaluate_and_promote
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task

from flows import artifacts
from flows.outcomes import TrainOutcome
from flows.params import (
    DataPrepParams,
    PipelineParams,
    PromoteParams,
    TrainParams,
    TuneParams,
    takes,
)
from flows.tasks import (
    IO_BACKOFF,
    IO_RETRIES,
    pin_data_version,
    push_data,
    reproduce_data,
    resolve_folder_data,
    retry_unless_usage_error,
    submit_training_job,
    train_model,
)
from tune.search_config import SearchResult
from unetflow.config import ExperimentConfig
from unetflow.datasets import is_raw_folder
from unetflow.jobs import JobOutcome
from unetflow.promotion import PromotionDecision
from unetflow.storage import is_remote
from unetflow.training import TrainReport


@flow(name="data_prep", log_prints=True)
@takes(DataPrepParams)
def data_prep(params: DataPrepParams) -> str:
    """Reproduce the DVC data stages (a no-op when nothing changed) and push."""
    version = reproduce_data(params.project_dir)
    if params.push:
        push_data(params.project_dir)
    artifacts.data_summary(version)
    print(f"data version {version}")
    return version


@flow(name="train", log_prints=True)
@takes(TrainParams)
def train(params: TrainParams) -> TrainOutcome | JobOutcome:
    """Train one config and register the model: on `config.data.version` when set
    (pulled if not present locally), on a raw images/ + masks/ `data.path` as it is,
    else on the current DVC data version. With `submit`, the driver is a Ray Job on the
    cluster that this flow follows."""
    config, project_dir = params.config, params.project_dir
    if params.submit:
        return submit_training_job(config, project_dir)
    if config.data.version:
        config, version = pin_data_version(config, project_dir)
    elif is_remote(config.data.path) or is_raw_folder(Path(project_dir) / config.data.path):
        # Versioned by content (a raw folder's hash, a bucket's manifest); no DVC stages.
        version = None
    else:
        version = reproduce_data(project_dir)
    report, reused, config, version = _train(config, project_dir, version)
    champion = _champion(config, project_dir)
    artifacts.train_summary(report, version, champion)
    return TrainOutcome(report, version, reused, champion)


def _train(config: ExperimentConfig, project_dir: str, version: str | None):
    """Train (or reuse the cached result for the same inputs).

    Returns:
        (report, reused, config as trained: `data.path` a prepared folder, data version:
        a raw folder's content hash when `data.path` is one, else `version`).
    """
    config, version = resolve_folder_data(config, project_dir, version)
    state = train_model(config, project_dir, version, return_state=True)
    return state.result(), state.name == "Cached", config, version


def _champion(config: ExperimentConfig, project_dir: str) -> str | None:
    # Read from the registry now: a reused (cached) report says what happened back then.
    from unetflow.tracking import champion_version

    tracking = config.tracking
    return champion_version(Path(project_dir), tracking.registered_model, tracking.champion_alias)


@task(
    name="evaluate-and-promote",
    retries=IO_RETRIES,
    retry_delay_seconds=IO_BACKOFF,
    retry_condition_fn=retry_unless_usage_error,
)
def _promote(params: PromoteParams):
    from unetflow.promotion import evaluate_and_promote as decide

    return decide(
        params.tracking,
        Path(params.project_dir),
        candidate_version=params.candidate_version,
        data_dir=Path(params.data_path) if params.data_path else None,
    )


@flow(name="evaluate_and_promote", log_prints=True)
@takes(PromoteParams)
def evaluate_and_promote(params: PromoteParams) -> PromotionDecision:
    """Promote the candidate only if its paired Dice gain is credibly above the margin."""
    decision = _promote(params)
    artifacts.markdown("promotion", decision.markdown(), "candidate vs champion on the test split")
    print(decision.summary())
    return decision


REPO_ROOT = Path(__file__).resolve().parents[1]


def _space_path(space: str, project_dir: str) -> str:
    # A relative space path names a file of the project, else one shipped in tune/spaces.
    path = Path(space)
    for root in (Path(project_dir), REPO_ROOT):
        if not path.is_absolute() and (root / path).is_file():
            return str((root / path).resolve())
    return space


@task(name="search")
def _search(params: TuneParams):
    from tune.search import run_search

    search = params.search.model_copy(
        update={"space": _space_path(params.search.space, params.project_dir)}
    )
    return run_search(search, Path(params.project_dir), base=params.base, resume=params.resume)


@flow(name="tune", log_prints=True)
@takes(TuneParams)
def tune(params: TuneParams) -> SearchResult:
    """Search, log every trial to MLflow; returns the best config and the Pareto front."""
    result = _search(params)
    artifacts.table("search-results", _rows(result.trials), f"trials of search {result.name}")
    front = [{"trial_id": p.trial_id, "dice": p.dice, "cost": p.cost} for p in result.front]
    artifacts.table("pareto-front", front, "Dice vs cost: the non-dominated trials")
    return result


def _rows(trials: list[dict]) -> list[dict]:
    # Table artifacts hold scalars; nested values become strings.
    return [
        {k: v if isinstance(v, int | float | str) else str(v) for k, v in t.items()} for t in trials
    ]


def _promote_params(
    params: PipelineParams, config: ExperimentConfig, report: TrainReport
) -> PromoteParams:
    """Judge the new version with the gates and aliases of the config it was trained with,
    on the test split of the data it was trained on (a folder's, too)."""
    return PromoteParams(
        project_dir=params.project_dir,
        tracking=config.tracking,
        candidate_version=report.version,
        data_path=str((Path(params.project_dir) / config.data.path).resolve()),
    )


@flow(name="pipeline", log_prints=True)
@takes(PipelineParams)
def pipeline(params: PipelineParams) -> TrainOutcome:
    """data_prep -> optional tune -> train the (best) config -> evaluate_and_promote."""
    version = data_prep(project_dir=params.project_dir)
    config: ExperimentConfig = params.config
    if params.tune is not None:
        config = tune(**params.tune.parameters()).best_config
    if config.data.version:
        config, version = pin_data_version(config, params.project_dir)
    report, reused, config, version = _train(config, params.project_dir, version)
    decision = None
    if params.promote and not report.became_champion and not reused:
        decision = evaluate_and_promote(**_promote_params(params, config, report).parameters())
    champion = _champion(config, params.project_dir)
    artifacts.train_summary(report, version, champion)
    return TrainOutcome(report, version, reused, champion, decision)
