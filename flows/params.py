"""Typed flow parameters: the Prefect UI renders each as a form with defaults and checks.

Every default is a value, not a `default_factory`: only values reach the parameter
schema, and the form shows what the schema says.

A flow takes its model's fields as top-level parameters (`takes`), an ExperimentConfig
field as its sections (data, model, loss, ...): the deployment's Parameters tab lists one
row per top-level parameter, so one `params` object would be one row of JSON.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from tune.search_config import SearchConfig
from unetflow.config import ExperimentConfig, TrackingSettings

PROJECT_DIR = Field(".", description="project folder: dvc.yaml, params.yaml, data and runs")


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def parameters(self) -> dict[str, Any]:
        """The flow's keyword arguments: these values, an ExperimentConfig as its sections."""
        out: dict[str, Any] = {}
        for key in type(self).model_fields:
            value = getattr(self, key)
            out.update(dict(value) if isinstance(value, ExperimentConfig) else {key: value})
        return out

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any]) -> _Params:
        """The model from the flow's keyword arguments (`parameters` inverted)."""
        values = dict(parameters)
        for key, field in cls.model_fields.items():
            if field.annotation is ExperimentConfig:
                sections = {k: values.pop(k) for k in ExperimentConfig.model_fields if k in values}
                values[key] = ExperimentConfig(**sections)
        return cls(**values)

    @classmethod
    def signature(cls) -> list[tuple[str, Any, Any, str | None]]:
        """(name, type, default, description) of each top-level parameter, in order."""
        defaults, rows = cls(), []
        for key, field in cls.model_fields.items():
            value = getattr(defaults, key)
            if isinstance(value, ExperimentConfig):
                sections = ExperimentConfig.model_fields.items()
                rows += [(k, f.annotation, getattr(value, k), f.description) for k, f in sections]
            else:
                rows.append((key, field.annotation, value, field.description))
        return rows


P = TypeVar("P", bound=_Params)
R = TypeVar("R")


def takes(model: type[P]) -> Callable[[Callable[[P], R]], Callable[..., R]]:
    """A flow body `fn(params: model)` as a function of `model`'s top-level parameters.

    The signature and the docstring's Args are what Prefect reads for the parameter
    schema (types, defaults, descriptions) and validates a run's parameters against.
    """

    def wrap(fn: Callable[[P], R]) -> Callable[..., R]:
        @functools.wraps(fn)
        def flow_fn(**parameters: Any) -> R:
            return fn(model.from_parameters(parameters))

        rows = model.signature()
        keyword = inspect.Parameter.KEYWORD_ONLY
        flow_fn.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter(n, keyword, default=d, annotation=t) for n, t, d, _ in rows],
            return_annotation=inspect.signature(fn, eval_str=True).return_annotation,
        )
        flow_fn.__annotations__ = {n: t for n, t, _, _ in rows}
        del flow_fn.__wrapped__  # type: ignore[attr-defined]  # the signature above, not fn's
        args = "".join(f"\n    {n}: {d}" for n, _, _, d in rows)
        flow_fn.__doc__ = f"{inspect.cleandoc(fn.__doc__ or '')}\n\nArgs:{args}"
        flow_fn.params_model = model  # type: ignore[attr-defined]
        return flow_fn

    return wrap


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
