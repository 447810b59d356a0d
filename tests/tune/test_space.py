"""Search spaces: the shipped YAML files validate, bad ones fail naming key and values."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tune.space import load_space, resolve_config
from unetflow.config import ConfigError, ExperimentConfig

SPACES = Path(__file__).resolve().parents[2] / "tune" / "spaces"


def write(tmp_path: Path, params: dict) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "params": params}))
    return path


@pytest.mark.parametrize("name", ["hpo", "nas", "losses"])
def test_shipped_spaces_validate_and_convert(name: str) -> None:
    space = load_space(SPACES / f"{name}.yaml")
    tune_space = space.to_tune()
    assert set(tune_space) == set(space.params)
    assert space.name == name


def test_invalid_choice_names_key_and_valid_values(tmp_path: Path) -> None:
    path = write(tmp_path, {"model.block": {"choice": ["plain", "dense"]}})
    with pytest.raises(ConfigError) as err:
        load_space(path)
    message = str(err.value)
    assert "params.model.block" in message and "'dense'" in message
    assert "valid values: ['plain', 'residual']" in message


def test_unknown_key_lists_valid_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'optim.learning_rate'.*'lr'"):
        load_space(write(tmp_path, {"optim.learning_rate": {"uniform": [0.1, 0.2]}}))


def test_unknown_loss_and_preset_name_the_registry(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"valid values: \[.*'dice_bce'"):
        load_space(write(tmp_path, {"loss.name": {"choice": ["dice", "hinge"]}}))
    with pytest.raises(ConfigError, match=r"valid values: \[.*'unetpp'"):
        load_space(write(tmp_path, {"model.preset": {"choice": ["unet", "vnet"]}}))


def test_range_end_is_checked_and_strings_like_1e_4_parse(tmp_path: Path) -> None:
    # PyYAML reads 1e-4 (no dot) as a string; it is accepted as a number.
    path = tmp_path / "s.yaml"
    path.write_text("params:\n  optim.lr: {loguniform: [1e-4, 1e-2]}\n")
    assert load_space(path).params["optim.lr"].low == pytest.approx(1e-4)
    with pytest.raises(ConfigError, match=r"params.data.augment.strength: 1.5 is not valid"):
        load_space(write(tmp_path, {"data.augment.strength": {"uniform": [0.0, 1.5]}}))
    with pytest.raises(ConfigError, match="needs low < high"):
        load_space(write(tmp_path, {"optim.lr": {"uniform": [0.1, 0.01]}}))


def test_bad_shape_of_a_parameter(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one distribution"):
        load_space(write(tmp_path, {"optim.lr": {"normal": [0, 1]}}))


def test_invalid_combination_asks_for_a_condition(tmp_path: Path) -> None:
    params = {
        "model.skip": {"choice": ["concat", "nested"]},
        "model.attention_gates": {"choice": [False, True]},
    }
    with pytest.raises(ConfigError, match=r"combination .* is invalid.*add a `when:`"):
        load_space(write(tmp_path, params))
    params["model.attention_gates"]["when"] = {"model.skip": "concat"}
    assert load_space(write(tmp_path, params)).params["model.attention_gates"].when


def test_conditional_parameter_applies_only_when_its_condition_holds() -> None:
    space = load_space(SPACES / "nas.yaml")
    base = ExperimentConfig()
    sampled = {
        "model.preset": "unet",
        "model.depth": 3,
        "model.deep_supervision": False,
        "loss.deep_supervision_decay": 0.5,
        "model.skip": "nested",
        "model.attention_gates": True,
    }
    cfg = resolve_config(base, sampled, space.params)
    assert cfg.loss.deep_supervision_weights is None
    assert cfg.model.skip == "nested" and cfg.model.attention_gates is False
    cfg = resolve_config(base, {**sampled, "model.deep_supervision": True}, space.params)
    assert cfg.loss.deep_supervision_weights == (1.0, 0.5, 0.25)


def test_virtual_keys_preset_and_augment_strength() -> None:
    base = ExperimentConfig()
    cfg = resolve_config(
        base, {"model.preset": "unetpp", "model.depth": 2, "data.augment.strength": 0.0}
    )
    assert cfg.model.skip == "nested" and cfg.model.depth == 2
    assert cfg.model.out_channels == base.model.out_channels
    assert cfg.data.augment.is_identity
