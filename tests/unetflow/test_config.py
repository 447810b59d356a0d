from __future__ import annotations

import pytest

from unetflow.config import ConfigError, ExperimentConfig, flatten, load_config
from unetflow_cli.main import main


def test_defaults_are_valid_and_fingerprint_is_stable() -> None:
    a, b = ExperimentConfig(), ExperimentConfig()
    assert a.fingerprint("v1") == b.fingerprint("v1") != a.fingerprint("v2")


def test_model_preset_with_overrides(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model: {preset: resunet, depth: 2, base_channels: 8}\ntrain: {epochs: 3}\n")
    cfg = load_config(path)
    assert (cfg.model.block, cfg.model.depth, cfg.train.epochs) == ("residual", 2, 3)


@pytest.mark.parametrize(
    "text,needle",
    [
        ("train: {epochs: 0}", "train.epochs"),
        ("trian: {epochs: 3}", "trian"),
        ("model: {preset: unett}", "unet"),
        ("optim: {name: adamx}", "optim.name"),
        ("train: [", "not valid YAML"),
        ("data: {node_cache_dir: cache}", "data.node_cache_dir"),
        ("data: {node_cache_dir: 's3://b/cache'}", "absolute local folder"),
        ("data: {node_cache_gb: -1}", "data.node_cache_gb"),
        ("data: {target_spacing: [1.0, 1.0, 1.0]}", "data.target_spacing"),
        ("data: {target_spacing: [.nan, 1.0]}", "positive finite"),
        ("data: {node_cache_gb: .inf}", "data.node_cache_gb"),
    ],
)
def test_bad_config_names_file_and_field(tmp_path, text: str, needle: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and needle in str(err.value)


def test_cli_bad_config_exits_2_with_one_line(tmp_path, capsys) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("train: {batch_size: -1}")
    assert main(["validate", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.batch_size" in err[0]


def test_cli_set_overrides_and_missing_file(capsys) -> None:
    assert main(["validate", "--set", "train.epochs=4"]) == 0
    assert "epochs: 4" in capsys.readouterr().out
    assert main(["validate", "--config", "nope.yaml"]) == 2


def test_flatten_gives_dotted_string_params() -> None:
    params = flatten(ExperimentConfig())
    assert params["train.epochs"] == str(ExperimentConfig().train.epochs)
    assert all(isinstance(v, str) for v in params.values())


def test_a_partial_model_section_overrides_the_project_default_model() -> None:
    """`--set model.depth=2` changes the depth of the default (16-channel) model; it used
    to rebuild the model from ModelConfig's class defaults (32 channels, depth 4)."""
    from unetflow.config import DEFAULT_MODEL, load_config

    cfg = load_config(None, {"model.depth": 2})
    assert (cfg.model.depth, cfg.model.base_channels) == (2, DEFAULT_MODEL.base_channels)
    cfg = load_config(None, {"model.spatial_dims": 3})
    assert cfg.model.spatial_dims == 3 and cfg.model.depth == DEFAULT_MODEL.depth
    assert load_config(None, {"model.preset": "unet3d"}).model.spatial_dims == 3
