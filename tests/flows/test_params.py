"""Flow parameters: typed models the Prefect UI renders as forms."""

from __future__ import annotations

import pytest
from prefect.utilities.callables import parameter_schema
from pydantic import ValidationError

from flows import pipeline
from flows.params import PipelineParams, PromoteParams, TrainParams
from flows.tasks import _train_cache_key
from unetflow.config import ExperimentConfig


@pytest.mark.parametrize(
    "flow",
    [
        pipeline.pipeline,
        pipeline.train,
        pipeline.data_prep,
        pipeline.tune,
        pipeline.evaluate_and_promote,
    ],
)
def test_every_flow_takes_its_models_fields_as_top_level_parameters(flow) -> None:
    # The deployment's Parameters tab lists one row per top-level parameter.
    schema = parameter_schema(flow.fn).model_dump_for_openapi()
    expected = list(flow.fn.params_model().parameters())
    assert list(schema["properties"]) == expected
    assert len(expected) >= 2 and "project_dir" in expected


def test_a_config_travels_as_its_sections_and_back() -> None:
    config = ExperimentConfig.model_validate({"model": {"depth": 2}, "train": {"epochs": 3}})
    params = PipelineParams(project_dir="p", config=config, promote=False)
    parameters = params.parameters()
    assert {"data", "model", "train", "tracking", "promote"} <= set(parameters)
    assert "config" not in parameters
    assert PipelineParams.from_parameters(parameters) == params


def test_train_params_schema_exposes_the_experiment_config() -> None:
    schema = parameter_schema(pipeline.train.fn).model_dump_for_openapi()
    assert set(ExperimentConfig.model_fields) <= set(schema["properties"])
    assert "epochs" in schema["definitions"]["TrainConfig"]["properties"]


def test_params_reject_unknown_fields_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="extra"):
        PipelineParams(projectdir=".")
    with pytest.raises(ValidationError, match="min_dice"):
        PromoteParams(tracking={"min_dice": 2})


def test_train_cache_key_changes_with_inputs(tmp_path) -> None:
    base = {"config": ExperimentConfig(), "project_dir": str(tmp_path), "data_version": "a"}
    key = _train_cache_key(None, base)
    assert key == _train_cache_key(None, dict(base))
    assert key != _train_cache_key(None, {**base, "data_version": "b"})
    other = ExperimentConfig.model_validate({"train": {"epochs": 3}})
    assert key != _train_cache_key(None, {**base, "config": other})
    assert key != _train_cache_key(None, {**base, "project_dir": str(tmp_path / "x")})


def test_train_params_default_is_valid() -> None:
    assert TrainParams().config == ExperimentConfig()


def test_pipeline_promotes_with_the_trained_configs_gates_and_aliases(tmp_path) -> None:
    from unetflow.training import TrainReport

    config = ExperimentConfig.model_validate(
        {"tracking": {"registered_model": "cells", "champion_alias": "prod", "min_dice": 0.9}}
    )
    report = TrainReport(
        run_id="r",
        experiment_id="1",
        model_uri="models:/m/1",
        registered_name="cells",
        version="4",
        became_champion=False,
        test_metrics={},
        best_val={},
        ray_run_name="n",
        storage_path="/s",
    )
    params = PipelineParams(project_dir=str(tmp_path), config=config)
    promote = pipeline._promote_params(params, config, report)
    assert promote.tracking == config.tracking  # min_dice 0.9 and @prod, not the defaults
    assert promote.candidate_version == "4"
    assert promote.data_path == str((tmp_path / "data" / "prepared").resolve())
