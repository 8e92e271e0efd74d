"""Optuna samplers by name, each seeded and sized to the trial budget.

Optuna's defaults assume long studies: TPE and GP propose at random for their first 10 trials and
NSGA-II's first generation is 50 random trials, so a 20-trial search never leaves random search
with them. Here the random start-up and the population shrink with the budget (`--trials`), and
never below the number of parallel workers, so the guided proposals start while trials remain.
"""

from __future__ import annotations

from typing import Callable

import optuna

from .local_search import ParetoLocalSearchSampler

SAMPLERS = ("random", "tpe", "nsga2", "gp", "local")

# Random start-up of TPE / GP: a fifth of the budget, between MIN_STARTUP and Optuna's own 10.
STARTUP_SHARE, MIN_STARTUP, MAX_STARTUP = 0.2, 4, 10
# NSGA-II: at least four generations within the budget, population between MIN_POPULATION and
# Optuna's default of 50.
GENERATIONS, MIN_POPULATION, MAX_POPULATION = 4, 4, 50


def startup_trials(trials: int, workers: int = 1) -> int:
    return max(workers, min(MAX_STARTUP, max(MIN_STARTUP, round(STARTUP_SHARE * trials))))


def population_size(trials: int, workers: int = 1) -> int:
    return max(workers, min(MAX_POPULATION, max(MIN_POPULATION, trials // GENERATIONS)))


def make_sampler(name: str, seed: int, trials: int = 20, workers: int = 1,
                 network_key: Callable[[dict], str] | None = None) -> optuna.samplers.BaseSampler:
    """`network_key(params)`: the network an assignment decodes to (for `local`, which must not
    propose a network the study already holds)."""
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        # constant_liar: a trial still running counts as a bad result, so parallel workers are not
        # all sent to the same promising region.
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                          n_startup_trials=startup_trials(trials, workers))
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population_size(trials, workers))
    if name == "gp":  # multi-objective through log expected hypervolume improvement
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup_trials(trials, workers))
    if name == "local":  # neighbours of the front's networks, half the time (search/local_search.py)
        return ParetoLocalSearchSampler(seed=seed, network_key=network_key)
    raise ValueError(f"unknown sampler {name!r}; known: {', '.join(SAMPLERS)}")
