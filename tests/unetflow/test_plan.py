"""The plan applied to a config: only what the user left unset, round-tripping as YAML."""

from __future__ import annotations

from pathlib import Path

import yaml

from unetflow.config import DEFAULT_MODEL, load_config
from unetflow.datasets import resolve_for
from unetflow.plan import plan_yaml, planned, user_settings


def _config(prepared_dir: Path, **overrides):
    return load_config(None, {"data.path": str(prepared_dir), **overrides})


def test_unset_settings_are_planned_and_user_settings_win(prepared_dir: Path) -> None:
    cfg = _config(prepared_dir, **{"train.batch_size": 5, "data.normalization.mode": "dataset"})
    out, plan, _ = planned(Path("."), cfg)
    assert plan is not None
    assert out.train.batch_size == 5 and out.data.normalization.mode == "dataset"
    assert out.model.pool_kernels == plan.pool_kernels.value  # unset: planned
    assert out.model.base_channels == DEFAULT_MODEL.base_channels  # not the bare class's 32
    assert out.train.epochs == plan.epochs.value
    # A user's depth keeps the model's own pooling: depth and pool kernels go together.
    deep = planned(Path("."), _config(prepared_dir, **{"model.depth": 2}))[0]
    assert deep.model.depth == 2 and deep.model.pool_kernels is None


def test_a_value_equal_to_the_default_still_counts_as_set(prepared_dir: Path) -> None:
    cfg = _config(prepared_dir, **{"train.epochs": 20})  # 20 is TrainConfig's default
    assert "train.epochs" in user_settings(cfg)
    assert planned(Path("."), cfg)[0].train.epochs == 20


def test_plan_false_leaves_the_config_alone(prepared_dir: Path) -> None:
    cfg = _config(prepared_dir, plan=False)
    out, plan, _ = planned(Path("."), cfg)
    assert plan is None and out is cfg


def test_the_plan_yaml_round_trips_through_config(prepared_dir: Path, tmp_path: Path) -> None:
    cfg = _config(prepared_dir, **{"train.epochs": 3})
    out, plan, memory = planned(Path("."), cfg)
    text = plan_yaml(cfg, plan, memory)
    (tmp_path / "plan.yaml").write_text(text)
    back = load_config(tmp_path / "plan.yaml")
    assert back == out
    assert planned(Path("."), back)[0] == back  # nothing left to plan: all of it is set
    commented = [line for line in text.splitlines() if "  # " in line]
    assert any(line.strip().startswith("batch_size:") for line in commented)
    assert any(line.strip().startswith("normalization:") for line in commented)
    assert any(line.startswith("    patience:") for line in commented)  # nested: indented
    assert yaml.safe_load(text)["train"]["epochs"] == 3


def test_mixed_shapes_get_a_patch_instead_of_a_refusal(tmp_path: Path, raw_folder) -> None:
    import numpy as np
    from PIL import Image

    folder = raw_folder(tmp_path, n=6)
    for sub in ("images", "masks"):  # one image of another shape
        array = np.asarray(Image.open(folder / sub / "s0.png"))
        Image.fromarray(np.pad(array, ((0, 16), (0, 8)))).save(folder / sub / "s0.png")
    cfg = load_config(None, {"data.path": "raw"})
    out = planned(tmp_path, cfg)[0]
    assert out.data.patch_size is not None and out.train.steps_per_epoch >= 1
    resolve_for(tmp_path, out)  # the data check accepts the planned config
