"""Registries of search algorithms and schedulers; a wrong name fails with the valid ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from unetflow.errors import UsageError

if TYPE_CHECKING:
    from tune.search_config import SearchConfig
    from tune.space import SearchSpace


def _optuna(search: SearchConfig) -> Any:
    from optuna.samplers import TPESampler
    from ray.tune.search.optuna import OptunaSearch

    metric, mode = search.objectives()
    sampler = TPESampler(seed=search.seed, multivariate=True)
    if len(metric) == 1:
        return OptunaSearch(metric=metric[0], mode=mode[0], sampler=sampler)
    return OptunaSearch(metric=metric, mode=mode, sampler=sampler)


def _hyperopt(search: SearchConfig) -> Any:
    from ray.tune.search.hyperopt import HyperOptSearch

    return HyperOptSearch(metric=search.metric, mode=search.mode, random_state_seed=search.seed)


def _bohb(search: SearchConfig) -> Any:
    from ray.tune.search.bohb import TuneBOHB

    return TuneBOHB(metric=search.metric, mode=search.mode, seed=search.seed)


def _random(search: SearchConfig) -> Any:
    from ray.tune.search import BasicVariantGenerator

    # Seeded: two searches with the same seed sample the same configurations. The cap is
    # the generator's own: Tune applies `max_concurrent_trials` to a `Searcher` only and
    # ignores it (with a warning) for a generator, so --max-concurrent 1 ran 2 trials.
    return BasicVariantGenerator(
        random_state=search.seed, max_concurrent=search.max_concurrent_trials or 0
    )


# random and grid: Tune's BasicVariantGenerator (random sampling, grid axes expanded).
SEARCH_ALGS: dict[str, Callable[[SearchConfig], Any]] = {
    "random": _random,
    "grid": _random,
    "optuna": _optuna,
    "hyperopt": _hyperopt,
    "bohb": _bohb,
}
SINGLE_OBJECTIVE_ONLY = ("hyperopt", "bohb")


def _asha(search: SearchConfig, space: SearchSpace) -> Any:
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="training_iteration",
        metric=search.metric,
        mode=search.mode,
        max_t=search.epochs_cap(),
        grace_period=search.grace_period,
        reduction_factor=search.reduction_factor,
    )


def _pbt(search: SearchConfig, space: SearchSpace) -> Any:
    from ray.tune.schedulers import PopulationBasedTraining

    # PBT perturbs continuous hyperparameters; architecture keys cannot change mid-run.
    mutations = {k: v for k, v in space.to_tune().items() if space.params[k].is_range}
    if not mutations:
        raise UsageError(
            f"--scheduler pbt needs a continuous parameter (uniform/loguniform) in {space.source}"
        )
    return PopulationBasedTraining(
        time_attr="training_iteration",
        metric=search.metric,
        mode=search.mode,
        perturbation_interval=1,
        hyperparam_mutations=mutations,
    )


def _fifo(search: SearchConfig, space: SearchSpace) -> Any:
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


def _hyperband_for_bohb(search: SearchConfig, space: SearchSpace) -> Any:
    from ray.tune.schedulers import HyperBandForBOHB

    return HyperBandForBOHB(
        time_attr="training_iteration",
        metric=search.metric,
        mode=search.mode,
        max_t=search.epochs_cap(),
        reduction_factor=search.reduction_factor,
    )


SCHEDULERS: dict[str, Callable[[SearchConfig, SearchSpace], Any]] = {
    "asha": _asha,
    "pbt": _pbt,
    "fifo": _fifo,
    "hyperband_bohb": _hyperband_for_bohb,
}


def build(search: SearchConfig, space: SearchSpace) -> tuple[Any, Any]:
    """(search algorithm or None, scheduler) for `search`, with combinations checked."""
    alg, sched = search.search_alg, search.scheduler
    if space.uses_grid and alg not in ("random", "grid"):
        raise UsageError(
            f"{space.source}: `grid` parameters need --search-alg random or grid "
            f"(got {alg}); use `choice` to let {alg} sample them"
        )
    if search.cost is not None and alg in SINGLE_OBJECTIVE_ONLY:
        raise UsageError(
            f"--search-alg {alg} is single-objective; use optuna (or random) with --cost"
        )
    if alg == "bohb":
        if sched not in ("asha", "hyperband_bohb"):
            raise UsageError(f"--search-alg bohb runs with its HyperBand scheduler, not {sched}")
        sched = "hyperband_bohb"  # BOHB needs HyperBandForBOHB to work as designed
    elif sched == "hyperband_bohb":
        raise UsageError("--scheduler hyperband_bohb goes with --search-alg bohb only")
    return SEARCH_ALGS[alg](search), SCHEDULERS[sched](search, space)
