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
from unetflow.config import ExperimentConfig

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
    max_concurrent_trials: int | None = Field(None, ge=1)  # None: see runner.max_concurrent
    max_failures: int = Field(1, ge=0)  # trial restarts from its last checkpoint
    reuse_actors: bool = True  # start each trial in a finished trial's process (cheaper)
    storage_path: str | None = None  # folder or s3://bucket/prefix; None: <project>/.unetflow/tune
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


def default_storage_root(project_dir: Path) -> str:
    """Where searches live unless `storage_path` says otherwise."""
    return str(project_dir.resolve() / ".unetflow" / "tune")


def storage_root(search: SearchConfig, project_dir: Path) -> str:
    return search.storage_path or default_storage_root(project_dir)
