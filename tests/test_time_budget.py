"""`time_budget_s`: once it is spent no new trial is proposed, while finalists are still trained."""

from __future__ import annotations

import subprocess

import optuna

from conftest import search_in_process, shared_study_config


def test_a_spent_time_budget_proposes_no_trial_but_still_trains_the_finalists(tmp_path, local_ray):
    results = tmp_path / "results"
    config = shared_study_config()
    outcome, _ = search_in_process(config, results, "timed", 2)
    assert outcome.completed == 2
    # Resumed with room for 8 more trials but no time: none is proposed, the front is retrained.
    timed = {**config, "time_budget_s": 0.001, "final_epochs": 0.3, "finalists": 2}
    outcome, lines = search_in_process(timed, results, "timed", 10)
    text = "\n".join(lines)
    assert "time budget of 0:00 spent: no new trials or promotions (2 completed, 0 finishing)" in text, text
    assert "finalists:" in text, text
    assert outcome.completed == 2 and not outcome.interrupted
    study = optuna.load_study(study_name="timed", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(results / "optuna.journal"))))
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    finals = [t for t in done if t.user_attrs["fidelity"] == "final"]
    assert len(done) - len(finals) == 2 and 1 <= len(finals) <= 2


def test_a_time_budget_that_is_not_positive_is_one_line():
    done = subprocess.run(["bitnas", "search", "--time-budget", "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "time_budget_s" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
