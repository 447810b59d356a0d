"""Promotion statistics (pure) and registry errors that need no training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from unetflow.config import TrackingSettings
from unetflow.errors import UsageError
from unetflow.promotion import (
    PromotionDecision,
    evaluate_and_promote,
    paired_bootstrap,
    rollback,
)

M = TrackingSettings(registered_model="m")


def test_identical_models_are_not_promoted() -> None:
    scores = np.random.default_rng(1).uniform(0.4, 0.9, size=30)
    result = paired_bootstrap(scores, scores.copy())
    assert result.mean_diff == 0.0 and result.ci_low == 0.0 and result.ci_high == 0.0
    assert not result.ci_low > 0.0  # the gate: lower bound strictly above the margin


def test_clearly_better_candidate_is_promoted() -> None:
    rng = np.random.default_rng(2)
    champion = rng.uniform(0.5, 0.8, size=25)
    candidate = champion + rng.uniform(0.05, 0.15, size=25)
    result = paired_bootstrap(candidate, champion)
    assert 0.05 < result.ci_low < result.mean_diff < result.ci_high < 0.15
    assert result.n == 25


def test_noisy_tie_is_not_promoted_and_margin_matters() -> None:
    rng = np.random.default_rng(3)
    champion = rng.uniform(0.5, 0.8, size=40)
    noisy = champion + rng.normal(0.0, 0.05, size=40)
    assert (
        paired_bootstrap(noisy, champion).ci_low < 0.0 < paired_bootstrap(noisy, champion).ci_high
    )
    better = champion + 0.02
    assert paired_bootstrap(better, champion).ci_low > 0.0
    assert not paired_bootstrap(better, champion).ci_low > 0.05  # a margin can hold it back


def test_bootstrap_is_seeded_and_drops_nan_pairs() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.uniform(size=20), rng.uniform(size=20)
    assert paired_bootstrap(a, b, seed=7) == paired_bootstrap(a, b, seed=7)
    assert paired_bootstrap(a, b, seed=7) != paired_bootstrap(a, b, seed=8)
    a[3] = np.nan
    assert paired_bootstrap(a, b).n == 19


def test_bootstrap_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="no image"):
        paired_bootstrap(np.array([np.nan]), np.array([0.5]))


def test_decision_table_names_versions_and_interval() -> None:
    from unetflow.promotion import BootstrapResult

    decision = PromotionDecision(
        model_name="m",
        candidate_version="3",
        champion_version="2",
        promoted=True,
        reason="CI lower bound +0.0100 is above the margin 0.0",
        candidate_dice=0.81,
        champion_dice=0.78,
        bootstrap=BootstrapResult(0.03, 0.01, 0.05, 12),
    )
    table = decision.markdown()
    assert "candidate v3 mean Dice | 0.8100" in table
    assert "champion v2 mean Dice | 0.7800" in table
    assert "[+0.0100, +0.0500]" in table and "promoted to champion" in table


@pytest.fixture
def embedded_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def test_rollback_without_previous_champion_is_a_clear_error(embedded_registry: Path) -> None:
    import mlflow

    from unetflow.tracking import tracking_uri
    from unetflow_cli.main import main

    mlflow.set_tracking_uri(tracking_uri(embedded_registry))
    MlflowClient().create_registered_model("m")
    with pytest.raises(UsageError, match="no 'previous-champion' version"):
        rollback(M, embedded_registry)
    assert main(["rollback", "--model", "m", "--project-dir", str(embedded_registry)]) == 2


def test_promote_unknown_version_is_a_clear_error(embedded_registry: Path) -> None:
    import mlflow

    from unetflow.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri(embedded_registry))
    MlflowClient().create_registered_model("m")
    with pytest.raises(UsageError, match="model 'm' has no version '9'"):
        evaluate_and_promote(M, embedded_registry, "9")


def test_decision_summary_and_dict_are_plain() -> None:
    import json

    decision = PromotionDecision(
        model_name="m",
        candidate_version="1",
        champion_version=None,
        promoted=True,
        reason="no champion yet",
        candidate_dice=0.7,
    )
    assert decision.summary() == "m v1 promoted to champion: no champion yet"
    assert json.loads(json.dumps(decision.as_dict()))["candidate_dice"] == 0.7


@pytest.mark.parametrize(
    ("flag", "value"), [("--min-dice", "1.5"), ("--margin", "2.0"), ("--min-dice", "-0.1")]
)
def test_promote_gates_out_of_range_are_refused_at_the_edge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    from unetflow_cli.main import main

    argv = ["promote", "--candidate", "1", flag, value, "--project-dir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {flag} {value}:") and len(err.splitlines()) == 1
    assert not (tmp_path / ".unetflow").exists()  # refused before any store was opened


def test_cli_flags_fill_tracking_settings_and_unset_ones_keep_the_defaults() -> None:
    from unetflow_cli.main import build_parser
    from unetflow_cli.registry import tracking_settings

    args = build_parser().parse_args(["promote", "--candidate", "2", "--alias", "prod"])
    assert tracking_settings(args) == TrackingSettings(champion_alias="prod")
    args = build_parser().parse_args(["rollback", "--model", "m", "--previous-alias", "old"])
    assert tracking_settings(args) == TrackingSettings(registered_model="m", previous_alias="old")


def test_promote_names_the_data_it_was_pointed_at(embedded_registry: Path) -> None:
    import mlflow

    from unetflow.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri(embedded_registry))
    client = MlflowClient()
    client.create_registered_model("m")
    client.create_model_version("m", source=str(embedded_registry / "model"))
    elsewhere = embedded_registry / "cells-prepared"
    with pytest.raises(UsageError, match=f"{elsewhere}: no prepared data .*--data"):
        evaluate_and_promote(M, embedded_registry, "1", data_dir=elsewhere)
    with pytest.raises(UsageError, match="data/prepared: no prepared data"):
        evaluate_and_promote(M, embedded_registry, "1")
