"""Search algorithm and scheduler registries, and the combinations they refuse."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from tune import algorithms
from tune.pareto import TrialPoint, choose, front_table, pareto_front
from tune.search_config import SearchConfig
from tune.space import load_space
from unetflow.errors import UsageError

SPACES = Path(__file__).resolve().parents[2] / "tune" / "spaces"


def test_unknown_names_list_the_registry() -> None:
    with pytest.raises(ValidationError, match=r"valid: \['random', 'grid', 'optuna'"):
        SearchConfig(space="x.yaml", search_alg="cmaes")
    with pytest.raises(ValidationError, match=r"valid: \['asha', 'pbt'"):
        SearchConfig(space="x.yaml", scheduler="median")


@pytest.mark.parametrize("alg", ["optuna", "hyperopt", "bohb"])
def test_each_search_algorithm_builds_and_suggests(alg: str) -> None:
    space = load_space(SPACES / "hpo.yaml")
    searcher, scheduler = algorithms.build(
        SearchConfig(space="hpo", search_alg=alg, epochs=3), space
    )
    searcher.set_search_properties("val_dice", "max", space.to_tune())
    suggestion = searcher.suggest("t1")
    assert set(suggestion) == set(space.params)
    expected = "HyperBandForBOHB" if alg == "bohb" else "AsyncHyperBandScheduler"
    assert type(scheduler).__name__ == expected


def test_multi_objective_optuna_and_refusals(tmp_path: Path) -> None:
    space = load_space(SPACES / "nas.yaml")
    searcher, _ = algorithms.build(
        SearchConfig(space="n", search_alg="optuna", cost="params"), space
    )
    assert searcher.metric == ["val_dice", "params"]
    with pytest.raises(UsageError, match="single-objective") as refused:
        algorithms.build(SearchConfig(space="n", search_alg="hyperopt", cost="flops"), space)
    assert _named_flags(str(refused.value)) <= _tune_flags()  # every flag it names exists
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({"params": {"model.depth": {"grid": [2, 3]}}}))
    with pytest.raises(UsageError, match="needs a continuous parameter"):
        algorithms.build(SearchConfig(space="g", scheduler="pbt"), load_space(grid))
    with pytest.raises(UsageError, match="need --search-alg random or grid"):
        algorithms.build(SearchConfig(space="g", search_alg="optuna"), load_space(grid))


def test_pbt_mutates_only_continuous_keys() -> None:
    space = load_space(SPACES / "hpo.yaml")
    _, pbt = algorithms.build(SearchConfig(space="h", scheduler="pbt"), space)
    assert "optim.lr" in pbt._hyperparam_mutations
    assert "optim.name" not in pbt._hyperparam_mutations


def test_pareto_front_and_choice() -> None:
    pts = [
        TrialPoint("a", 0.80, 100, {}),
        TrialPoint("b", 0.85, 300, {}),
        TrialPoint("c", 0.70, 200, {}),
        TrialPoint("d", 0.90, 1000, {"k": "x"}),
    ]
    front = pareto_front(pts)
    assert [p.trial_id for p in front] == ["a", "b", "d"]
    assert choose(front).trial_id == "d"
    assert choose(front, max_cost=500).trial_id == "b"
    with pytest.raises(ValueError, match="cheapest costs 100"):
        choose(front, max_cost=50)
    table = front_table(pts, front, "params")
    assert table["on_front"] == [True, False, True, True] and table["k"][-1] == "x"


def _named_flags(message: str) -> set[str]:
    import re

    return set(re.findall(r"--[a-z][a-z-]*", message))


def _tune_flags() -> set[str]:
    from unetflow_cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["tune"]
    return {opt for action in sub._actions for opt in action.option_strings}
