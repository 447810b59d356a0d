"""What a search is (`SearchConfig`) and what it returns (`SearchResult`): the types the
CLI, the Prefect flow and the driver share. The entry points are in `tune.search`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tune import algorithms
from tune.pareto import TrialPoint
from unet_core.engine import EPOCH_METRICS
from unet_core.engine.config import check_epoch_metric
from unetflow.config import ExperimentConfig

STATE_FILE = "unetflow_search.json"  # beside Tune's own state: what --resume needs


class SearchConfig(BaseModel):
    """How to search; every knob has a default that suits a laptop."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="Search")

    name: str = Field(
        "search", pattern=r"^[A-Za-z0-9_.-]+$", description="storage folder and MLflow tag"
    )
    space: str = Field(description="path of the space YAML (relative to the project folder)")
    num_samples: int = Field(
        8, ge=1, description="sampled configurations (grid: repeats of the grid)"
    )
    # The registries stay the one list of names: the form's choices are read from them.
    search_alg: str = Field(
        "random",
        description="how configurations are proposed",
        json_schema_extra={"enum": list(algorithms.SEARCH_ALGS)},
    )
    scheduler: str = Field(
        "asha",
        description="how trials are stopped early",
        json_schema_extra={"enum": list(algorithms.SCHEDULERS)},
    )
    metric: str = Field(
        "val_dice",
        description="reported each epoch; the first objective",
        json_schema_extra={"enum": list(EPOCH_METRICS)},
    )
    mode: Literal["max", "min"] = Field("max", description="whether higher metric is better")
    cost: Literal["params", "flops", "latency_ms"] | None = Field(
        None, description="second objective (minimised); none: single objective"
    )
    max_cost: float | None = Field(
        None, gt=0, description="pick the best on the front within this cost"
    )
    epochs: int | None = Field(
        None, ge=1, description="epochs per trial; none: train.epochs of the base config"
    )
    grace_period: int = Field(1, ge=1, description="ASHA: epochs before a trial can be stopped")
    reduction_factor: int = Field(3, ge=2, description="ASHA/HyperBand: keep 1/rf per rung")
    cpus_per_trial: float = Field(1.0, gt=0, description="CPUs per (single-worker) trial")
    gpus_per_trial: float = Field(
        0.0, ge=0, description="GPUs per trial; fractions share a GPU between trials"
    )
    max_concurrent_trials: int | None = Field(
        None,
        ge=1,
        description="none: random and grid searches queue every trial and Tune runs as many as fit; model-based searches: as many as the cluster's maximum allows",
    )
    max_failures: int = Field(1, ge=0, description="trial restarts from its last checkpoint")
    reuse_actors: bool = Field(
        True, description="start each trial in a finished trial's process (cheaper)"
    )
    storage_path: str | None = Field(
        None, description="folder or s3://bucket/prefix; none: .unetflow/tune in the project"
    )
    seed: int = Field(0, description="seed of the search algorithm")
    retrain: bool = Field(
        False, description="retrain the chosen config on train+val and register it"
    )
    track: bool = Field(True, description="log an MLflow parent run and one child per trial")

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

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        return check_epoch_metric(value, "metric")

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


def default_storage_root(project_dir: Path) -> str:
    """Where searches live unless `storage_path` says otherwise."""
    return str(project_dir.resolve() / ".unetflow" / "tune")


def storage_root(search: SearchConfig, project_dir: Path) -> str:
    return search.storage_path or default_storage_root(project_dir)


@dataclass(frozen=True)
class SearchTracking:
    """The MLflow parent run of a search; trial processes log their child runs under it."""

    uri: str
    experiment_id: str
    parent_run_id: str
    search_name: str


@dataclass(frozen=True)
class TrialSetup:
    """What every trial process needs besides its sampled values (sent once by Ray)."""

    base: str  # the base ExperimentConfig as JSON
    specs: dict[str, dict[str, Any]]  # sampled key -> ParamSpec as a dict
    data_dir: str  # the prepared data set, an absolute path
    tracking: SearchTracking | None  # None: the search is not tracked
    latency: bool  # measure latency as a cost metric
    storage: str  # where a multi-worker trial's Ray Train run keeps its checkpoints
