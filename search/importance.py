"""Which design choices matter: for each objective, Optuna's parameter importance of the study's
design choices (the space's parameters: block, width, depth, bit widths per stage).

The evaluator is Optuna's mean decrease in impurity (`MeanDecreaseImpurityImportanceEvaluator`:
a random forest fitted to the trials, each choice scored by how much its splits explain). Chosen
by measurement on studies whose objectives depend on known choices (tests/test_importance.py):
it named the right choice first for every objective at 20, 60, 300 and 1,000 trials, as fANOVA
(Optuna's default) did, but fANOVA took 13 s at 60 trials and 90 s at 300 here (on a loaded machine), too slow to refresh
beside the other views; PED-ANOVA was fast but ranked a random choice first at 60 trials.
The forest is fitted on at most MAX_TRIALS trials (a seeded sample) so a study of 10,000 trials
refreshes this view in seconds, not minutes.
"""

from __future__ import annotations

import math
import random
import warnings

import optuna
import pandas as pd
from optuna.trial import TrialState

from .objectives import Objective

MIN_TRIALS = 8        # fewer completed trials than this and the view says so instead of guessing
MAX_TRIALS = 2_000    # enough to rank 16 choices; beyond it, a seeded sample
COLUMNS = ["objective", "parameter", "importance"]


def _comparable_trials(study: optuna.Study) -> list:
    """Completed trials that measured their own network at the full budget: a duplicate repeats
    another trial's result, and a trial stopped early trained for less (its accuracy is not comparable)."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("duplicate_of") is None and not t.user_attrs.get("stopped_early")]


def _shared_choices(trials: list) -> list[str]:
    """The design choices every trial made from the same distribution (a study resumed with a
    changed space has others). Computed here because Optuna's own search-space intersection
    deep-copies every trial, the slowest part of this view at 10,000 trials."""
    first = trials[0].distributions
    return sorted(name for name, distribution in first.items()
                  if all(t.distributions.get(name) == distribution for t in trials))


def design_importances(study: optuna.Study, objectives: list[Objective], seed: int = 0) -> pd.DataFrame:
    """One row per (objective, design choice): its importance, normalised to sum to 1 per
    objective; empty when the study has fewer than MIN_TRIALS comparable trials."""
    trials = _comparable_trials(study)
    if len(trials) < MIN_TRIALS:
        return pd.DataFrame(columns=COLUMNS)
    if len(trials) > MAX_TRIALS:
        trials = random.Random(seed).sample(trials, MAX_TRIALS)
    choices = _shared_choices(trials)
    if not choices:
        return pd.DataFrame(columns=COLUMNS)
    # The evaluators read a study: an in-memory one holding exactly the trials to compare.
    sample = optuna.create_study(directions=study.directions)
    sample.add_trials(trials)
    evaluator = optuna.importance.MeanDecreaseImpurityImportanceEvaluator(seed=seed)
    rows = []
    for index, objective in enumerate(objectives):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = optuna.importance.get_param_importances(sample, evaluator=evaluator, params=choices,
                                                             target=lambda t, i=index: t.values[i])
        rows += [{"objective": objective.name, "parameter": name, "importance": float(value)}
                 for name, value in scores.items() if math.isfinite(value)]
    return pd.DataFrame(rows, columns=COLUMNS)


def importance_lines(importances: pd.DataFrame, objectives: list[Objective], top: int = 3) -> list[str]:
    """'accuracy depends most on s0_block (0.47), s1_wbits (0.22), s2_width (0.08)', one per objective."""
    if importances.empty:
        return [f"design choices: importance needs at least {MIN_TRIALS} completed trials"]
    lines = []
    for objective in objectives:
        ranked = importances[importances["objective"] == objective.name].nlargest(top, "importance")
        if len(ranked):
            shown = ", ".join(f"{row.parameter} ({row.importance:.2f})" for row in ranked.itertuples())
            lines.append(f"{objective.name} depends most on {shown}")
    return lines
