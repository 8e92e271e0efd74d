"""Side-by-side latency at the end of a search (search/latency_check.py): a trial as accurate and as
frugal as a reference whose one latency measurement came out slower is timed against it in
alternating rounds, and the verdict is recorded in the study and shown with the reference."""

import optuna
import pandas as pd

from bitnas.search.config import SearchConfig
from bitnas.search.latency_check import (applies, candidates, check_against_references, recorded_checks,
                                         side_by_side_winners)
from bitnas.search.objectives import objectives_for
from bitnas.search.report import reference_lines
from bitnas.spaces.baselines import baseline_genotype

GEOMETRY = {"input_size": 28, "in_channels": 1, "num_classes": 10}
OBJECTIVES = objectives_for(["accuracy", "latency_ms", "energy_uj"])


def _trials(rows):
    return pd.DataFrame([{"trial": t, "accuracy": a, "latency_ms": l, "energy_uj": e, "feasible": True,
                          "duplicate_of": None} for t, a, l, e in rows])


def _reference(latency=1.0, dominated_by=()):
    return pd.DataFrame([{"reference": "bireal_small", "accuracy": 0.70, "latency_ms": latency, "energy_uj": 1.5,
                          "dominated_by": list(dominated_by)}])


def test_only_trials_no_worse_but_on_latency_and_close_to_it_are_checked():
    trials = _trials([(0, 0.71, 1.2, 1.4),    # as accurate, cheaper, 1.2x slower measured: checked
                      (1, 0.69, 0.9, 1.4),    # less accurate: never dominates
                      (2, 0.75, 1.6, 1.4),    # 1.6x slower: beyond what the machine's swings explain
                      (3, 0.72, 1.1, 1.6),    # more energy
                      (4, 0.70, 1.05, 1.5)])  # equal on both: checked (latency can make it strictly better)
    assert candidates(_reference(), trials, OBJECTIVES) == {"bireal_small": [4, 0]}
    assert candidates(_reference(dominated_by=[7]), trials, OBJECTIVES) == {}  # already dominated: nothing to time


def test_a_trial_dominates_side_by_side_only_when_its_ratio_is_below_one():
    reference = _reference().iloc[0]
    trials = _trials([(0, 0.71, 1.2, 1.4), (4, 0.70, 1.05, 1.5)])
    assert side_by_side_winners(reference, {0: 0.9, 4: 0.95}, trials, OBJECTIVES) == [(0, 0.9), (4, 0.95)]
    assert side_by_side_winners(reference, {0: 1.02, 4: 1.0}, trials, OBJECTIVES) == []


def test_networks_are_timed_against_the_reference_and_the_verdict_is_kept(tmp_path):
    config = SearchConfig()
    assert applies(config, OBJECTIVES)
    assert not applies(SearchConfig(ray={"address": "auto"}), OBJECTIVES)  # the target may be another machine
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    bireal = baseline_genotype("bireal_small", **GEOMETRY)
    # Half as wide in its last two stages: clearly faster. Twice as wide at 28x28: clearly slower.
    narrow = bireal.model_copy(update={"stages": (bireal.stages[0], bireal.stages[1].model_copy(update={"width": 16}),
                                                  bireal.stages[2].model_copy(update={"width": 32}))})
    wide = bireal.model_copy(update={"stages": (bireal.stages[0].model_copy(update={"width": 64}),) + bireal.stages[1:]})
    for genotype in (narrow, wide):
        study.add_trial(optuna.trial.create_trial(values=[0.8, 1.0, 1.0], user_attrs={"genotype": genotype.to_dict()}))
    # Single measurements that came out slower than the reference's: both are timed against it.
    trials = _trials([(0, 0.75, 0.25, 1.4), (1, 0.75, 0.22, 1.4)])
    reference = _reference(latency=0.2)
    said = []
    checks = check_against_references(study, config, OBJECTIVES, reference, trials, GEOMETRY, said.append)
    assert "bireal_small against trial(s) 1, 0" in said[0]
    assert checks["bireal_small"][0] < 1 < checks["bireal_small"][1]
    assert recorded_checks(study) == checks
    winners = side_by_side_winners(reference.iloc[0], checks["bireal_small"], trials, OBJECTIVES)
    assert [trial for trial, _ in winners] == [0]
    row = reference.iloc[0].to_dict() | {"side_by_side": checks["bireal_small"], "dominated_side_by_side": [0]}
    [_, line, _] = reference_lines(pd.DataFrame([row]), OBJECTIVES)
    assert "dominated by trial 0 with latency timed side by side" in line and "trial 1 " in line
