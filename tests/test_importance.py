"""Which design choices matter: on a study whose objectives depend on known parameters, the
importance view names them first, is logged to the study's MLflow run (importance.csv and
importance.png beside the other views) and gives the summary its lines."""

from __future__ import annotations

import random

import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from optuna.distributions import CategoricalDistribution

from bitnas.search.config import SearchConfig
from bitnas.search.importance import MIN_TRIALS, design_importances, importance_lines
from bitnas.search.objectives import objectives_for
from bitnas.search.storage import open_storage
from bitnas.search.summary import SearchOutcome, summary_text
from bitnas.search.tracking import StudyTracker
from bitnas.search.views import StudyViews

OBJECTIVES = objectives_for(("accuracy", "latency_ms", "energy_uj"))


def planted_study(count: int, storage=None) -> optuna.Study:
    """Accuracy set by s0_block (float best), latency by s2_width, energy by s1_wbits; the rest noise."""
    choices = SearchConfig().space.choices()
    distributions = {name: CategoricalDistribution(values) for name, values in choices.items()}
    rng = random.Random(1)
    study = optuna.create_study(storage=storage, study_name="planted",
                                directions=["maximize", "minimize", "minimize"])
    for _ in range(count):
        params = {name: rng.choice(values) for name, values in choices.items()}
        values = [0.9 if params["s0_block"] == "float" else 0.6 + rng.gauss(0, 0.01),
                  params["s2_width"] / 10 + rng.gauss(0, 0.05),
                  params["s1_wbits"] + rng.gauss(0, 0.1)]
        study.add_trial(optuna.trial.create_trial(values=values, params=params, distributions=distributions,
                                                  user_attrs={"metrics": {}, "constraints": {}}))
    return study


def test_the_choice_that_sets_each_objective_comes_first():
    ranked = design_importances(planted_study(60), OBJECTIVES)
    top = {o: group.nlargest(1, "importance")["parameter"].item() for o, group in ranked.groupby("objective")}
    assert top == {"accuracy": "s0_block", "latency_ms": "s2_width", "energy_uj": "s1_wbits"}
    for _, group in ranked.groupby("objective"):
        assert group["importance"].sum() == pytest.approx(1.0)
    lines = importance_lines(ranked, OBJECTIVES)
    assert len(lines) == 3 and lines[0].startswith("accuracy depends most on s0_block (")


def test_too_few_trials_is_said_not_guessed():
    ranked = design_importances(planted_study(MIN_TRIALS - 1), OBJECTIVES)
    assert ranked.empty
    assert importance_lines(ranked, OBJECTIVES) == [f"design choices: importance needs at least {MIN_TRIALS} completed trials"]


def test_views_log_importance_to_mlflow_and_the_summary_states_it(tmp_path):
    config = SearchConfig(results=str(tmp_path), study="planted")
    study = planted_study(30, open_storage(tmp_path))
    tracker = StudyTracker(tmp_path, "planted", {}, list(config.objectives))
    views = StudyViews(study, tracker, OBJECTIVES, config)
    frame, volume = views.refresh(final=True)
    client = MlflowClient(tracker.uri)
    logged = {a.path for a in client.list_artifacts(tracker.parent_id)}
    assert {"importance.csv", "importance.png", "pareto.csv", "hypervolume.png"} <= logged
    table = pd.read_csv(client.download_artifacts(tracker.parent_id, "importance.csv", str(tmp_path / "down")))
    assert set(table["objective"]) == set(config.objectives)
    outcome = SearchOutcome("planted", len(frame), 0, False, frame, volume, 1.0, OBJECTIVES,
                            importances=views.importances, accuracy_floor=0.19)
    text = summary_text(outcome, config)
    assert "accuracy depends most on s0_block" in text and "latency_ms depends most on s2_width" in text
    assert "accuracy floor: 0.190 validation accuracy" in text
