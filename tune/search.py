"""`run_search`: one Ray Tune search over a validated space, tracked in MLflow, resumable.

Storage is deterministic (`<project>/.unetflow/tune/<name>` unless `storage_path` is
set), so `run_search(..., resume=True)` (`unetflow tune --resume NAME`) restores a
search whose driver died: finished trials are kept, unfinished and errored ones resume
from their last checkpoint.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tune import algorithms
from tune.pareto import TrialPoint
from tune.space import SearchSpace, load_space, resolve_config
from unetflow.config import ExperimentConfig
from unetflow.errors import UsageError

STATE_FILE = "unetflow_search.json"  # beside Tune's own state: what --resume needs


class SearchConfig(BaseModel):
    """How to search; every knob has a default that suits a laptop."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field("search", pattern=r"^[A-Za-z0-9_.-]+$")  # storage folder + MLflow tag
    space: str  # path of the space YAML
    num_samples: int = Field(8, ge=1)  # sampled configurations (grid: repeats of the grid)
    search_alg: str = "random"  # see algorithms.SEARCH_ALGS
    scheduler: str = "asha"  # see algorithms.SCHEDULERS
    metric: str = "val_dice"  # reported each epoch; the first objective
    mode: Literal["max", "min"] = "max"
    cost: Literal["params", "flops", "latency_ms"] | None = None  # second objective (min)
    max_cost: float | None = Field(None, gt=0)  # pick from the front within this cost
    epochs: int | None = Field(None, ge=1)  # override train.epochs of the base config
    grace_period: int = Field(1, ge=1)  # ASHA: epochs before a trial can be stopped
    reduction_factor: int = Field(3, ge=2)  # ASHA/HyperBand: keep 1/rf per rung
    cpus_per_trial: float = Field(1.0, gt=0)  # single-worker trials
    gpus_per_trial: float = Field(0.0, ge=0)  # fractions share a GPU between trials
    max_concurrent_trials: int | None = Field(None, ge=1)  # None: from cluster resources
    max_failures: int = Field(1, ge=0)  # trial restarts from its last checkpoint
    reuse_actors: bool = True  # start each trial in a finished trial's process (cheaper)
    storage_path: str | None = None  # None: <project>/.unetflow/tune
    seed: int = 0
    retrain: bool = False  # retrain the chosen config on train+val and register it
    track: bool = True  # MLflow parent + child runs

    @field_validator("search_alg")
    @classmethod
    def _known_alg(cls, value: str) -> str:
        if value not in algorithms.SEARCH_ALGS:
            raise ValueError(f"unknown search_alg {value!r}; valid: {list(algorithms.SEARCH_ALGS)}")
        return value

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        if value not in algorithms.SCHEDULERS:
            raise ValueError(f"unknown scheduler {value!r}; valid: {list(algorithms.SCHEDULERS)}")
        return value

    def objectives(self) -> tuple[list[str], list[str]]:
        if self.cost is None:
            return [self.metric], [self.mode]
        return [self.metric, self.cost], [self.mode, "min"]

    def epochs_cap(self) -> int:
        return self.epochs or 1  # set from the base config by run_search


@dataclass
class SearchResult:
    """What a search produced (returned to the CLI and the Prefect flow)."""

    name: str
    storage_path: str
    parent_run_id: str | None
    best_trial_id: str
    best_config: ExperimentConfig
    best_metrics: dict[str, float]
    front: list[TrialPoint]
    trials: list[dict[str, Any]]
    total_epochs: int
    registered: Any = None  # unetflow.training.TrainReport when retrained
    errors: list[str] = field(default_factory=list)


def storage_root(search: SearchConfig, project_dir: Path) -> str:
    return search.storage_path or str(project_dir.resolve() / ".unetflow" / "tune")


def run_search(
    search: SearchConfig | str | Path,
    project_dir: Path,
    base: ExperimentConfig | None = None,
    data_dir: Path | None = None,
    resume: bool = False,
) -> SearchResult:
    """Run (or resume) a search and return the best config and the Pareto front.

    Args:
        search: a `SearchConfig`, or the path of a space YAML (defaults for the rest).
        project_dir: the project folder (MLflow store, default storage, relative data).
        base: the config the space modifies (default: the embedded defaults).
        data_dir: the prepared data set, or a raw images/ + masks/ folder (default:
            `base.data.path` under `project_dir`).
        resume: restore the search of the same name from its storage.
    """
    if not isinstance(search, SearchConfig):
        search = SearchConfig(space=str(search), name=Path(search).stem)
    project_dir = project_dir.resolve()
    base = base or ExperimentConfig()
    if search.epochs is not None:
        base = base.model_copy(
            update={"train": base.train.model_copy(update={"epochs": search.epochs})}
        )
    search = search.model_copy(update={"epochs": base.train.epochs})
    space = load_space(search.space, base)
    from unet_core.data import read_manifest
    from unetflow.datasets import resolve_data

    # A raw images/ + masks/ folder is prepared once per content, as for training.
    model = base.model
    data_dir, _ = resolve_data(
        project_dir, str(data_dir or base.data.path), model.spatial_dims, model.in_channels
    )
    read_manifest(data_dir)  # fails now, with the path, rather than inside every trial
    from tune.runner import execute

    return execute(search, space, base, data_dir, project_dir, resume)


def save_state(path: Path, search: SearchConfig, base: ExperimentConfig, data_dir: Path) -> None:
    """What `--resume NAME` needs to rebuild the same search."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "search": search.model_dump(mode="json"),
        "base": base.model_dump(mode="json"),
        "data_dir": str(data_dir),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(path)  # never half-written


def resume_search(name: str, project_dir: Path, storage_path: str | None = None) -> SearchResult:
    """Resume the search `name` from its saved state (`unetflow tune --resume NAME`)."""
    root = storage_path or str(project_dir.resolve() / ".unetflow" / "tune")
    state_file = Path(root) / f"{name}.{STATE_FILE}"
    if not state_file.exists():
        found = sorted(p.name.split(".")[0] for p in Path(root).glob(f"*.{STATE_FILE}"))
        raise UsageError(
            f"no search named {name!r} under {root}; searches there: {found or 'none'}"
        )
    state = json.loads(state_file.read_text())
    search = SearchConfig.model_validate(state["search"])
    base = ExperimentConfig.model_validate(state["base"])
    return run_search(search, project_dir, base, Path(state["data_dir"]), resume=True)


def max_concurrent(search: SearchConfig, base: ExperimentConfig, num_trials: int) -> int:
    """Trials that fit the cluster at once (CPUs and GPUs per trial), at most `num_trials`."""
    if search.max_concurrent_trials is not None:
        return search.max_concurrent_trials
    import ray

    total = ray.cluster_resources()
    cpus, gpus = trial_footprint(search, base)
    fits = math.floor(total.get("CPU", 1) / cpus) if cpus else num_trials
    if gpus:
        fits = min(fits, math.floor(total.get("GPU", 0) / gpus))
    return max(1, min(fits, num_trials))


def trial_footprint(search: SearchConfig, base: ExperimentConfig) -> tuple[float, float]:
    """CPUs and GPUs one trial occupies (all workers of a multi-worker trial)."""
    s = base.scaling
    if s.num_workers > 1:
        return s.num_workers * s.cpus_per_worker, s.num_workers * s.gpus_per_worker * s.use_gpu
    return search.cpus_per_trial, search.gpus_per_trial


def best_config_of(base: ExperimentConfig, space: SearchSpace, sampled: dict) -> ExperimentConfig:
    return resolve_config(base, sampled, space.params)
