"""Typed flow parameters: the Prefect UI renders each as a form with defaults and checks."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tune.search_config import SearchConfig
from unetflow.config import ExperimentConfig, TrackingSettings


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataPrepParams(_Params):
    project_dir: str = Field(".", description="folder holding dvc.yaml and params.yaml")
    push: bool = Field(True, description="upload the prepared data to the DVC remote")


class TrainParams(_Params):
    project_dir: str = Field(".", description="folder holding dvc.yaml and the prepared data")
    config: ExperimentConfig = Field(default_factory=ExperimentConfig)


class PromoteParams(_Params):
    project_dir: str = "."
    tracking: TrackingSettings = Field(
        TrackingSettings(),
        description="registered model, its aliases and the gates (min_dice, margin)",
    )
    candidate_version: str | None = Field(
        None, description="version to evaluate; None: the newest version"
    )
    data_path: str | None = Field(
        None, description="prepared data set whose test split judges both; None: data/prepared"
    )


class TuneParams(_Params):
    project_dir: str = "."
    search: SearchConfig = Field(
        default_factory=lambda: SearchConfig(space="tune/spaces/hpo.yaml", name="weekly"),
        description="space file, algorithm, scheduler, samples; see tune/search.py",
    )
    base: ExperimentConfig = Field(
        default_factory=ExperimentConfig, description="the config the space modifies"
    )
    resume: bool = Field(False, description="continue the search of the same name")


class PipelineParams(_Params):
    project_dir: str = "."
    config: ExperimentConfig = Field(default_factory=ExperimentConfig)
    tune: TuneParams | None = Field(
        None, description="run a search first and train its best config"
    )
    promote: bool = Field(
        True,
        description="evaluate the new version against the champion "
        "(gates: config.tracking.min_dice and config.tracking.margin)",
    )
