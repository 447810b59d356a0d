"""Typed flow parameters: the Prefect UI renders each as a form with defaults and checks.

Every default is a value, not a `default_factory`: only values reach the parameter
schema, and the form shows what the schema says.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tune.search_config import SearchConfig
from unetflow.config import ExperimentConfig, TrackingSettings

PROJECT_DIR = Field(".", description="project folder: dvc.yaml, params.yaml, data and runs")


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataPrepParams(_Params):
    """Reproduce the DVC data stages."""

    model_config = ConfigDict(title="Data preparation")

    project_dir: str = PROJECT_DIR
    push: bool = Field(True, description="upload the prepared data to the DVC remote")


class TrainParams(_Params):
    """Train one configuration and register the model."""

    model_config = ConfigDict(title="Training")

    project_dir: str = PROJECT_DIR
    config: ExperimentConfig = Field(ExperimentConfig(), description="what to train, and how")
    submit: bool = Field(
        False,
        description="run the training driver as a Ray Job on the cluster (RAY_ADDRESS) and "
        "follow it: it survives a restarted worker, and a rerun attaches to it or resumes "
        "it (needs data and checkpoints on s3:// and an MLflow server)",
    )


class PromoteParams(_Params):
    """Evaluate a candidate version against the champion; promote it when it is better."""

    model_config = ConfigDict(title="Promotion")

    project_dir: str = PROJECT_DIR
    tracking: TrackingSettings = Field(
        TrackingSettings(),
        description="registered model, its aliases and the gates (min_dice, margin)",
    )
    candidate_version: str | None = Field(
        None, description="version to evaluate; none: the newest version"
    )
    data_path: str | None = Field(
        None, description="prepared data set whose test split judges both; none: data/prepared"
    )


WEEKLY_SEARCH = SearchConfig(space="tune/spaces/hpo.yaml", name="weekly")


class TuneParams(_Params):
    """Search architectures and hyperparameters with Ray Tune."""

    model_config = ConfigDict(title="Search")

    project_dir: str = PROJECT_DIR
    search: SearchConfig = Field(
        WEEKLY_SEARCH, description="space file, algorithm, scheduler, samples"
    )
    base: ExperimentConfig = Field(ExperimentConfig(), description="the config the space modifies")
    resume: bool = Field(False, description="continue the search of the same name")


class PipelineParams(_Params):
    """Data, (optional search,) training and promotion in one run."""

    model_config = ConfigDict(title="Pipeline")

    project_dir: str = PROJECT_DIR
    config: ExperimentConfig = Field(ExperimentConfig(), description="what to train, and how")
    submit: bool = Field(
        False,
        description="run the training driver as a Ray Job on the cluster (RAY_ADDRESS) and "
        "follow it: it survives a restarted worker, and a rerun attaches to it or resumes "
        "it (needs data and checkpoints on s3:// and an MLflow server)",
    )
    tune: TuneParams | None = Field(
        None, description="run a search first and train its best config; none: no search"
    )
    promote: bool = Field(
        True,
        description="evaluate the new version against the champion "
        "(gates: config.tracking.min_dice and config.tracking.margin)",
    )
