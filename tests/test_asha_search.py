"""`schedule: asha` end to end, in this process on the session's Ray, with the real Optuna journal
and MLflow store: promotions and stops, promotions resuming from their checkpoints (not from
step 0), the front made of networks at their highest rung, one MLflow run per network with a step
per rung, and a search stopped with a promotion in flight resumed from the saved scheduler state."""

import math
import os
import signal

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from bitnas.search.asha import AshaSchedule, MultiObjectiveAsha
from bitnas.search.config import ConfigError, SearchConfig, load_config
from bitnas.search.objectives import objectives_for
from bitnas.search.report import trials_frame
from bitnas.search.tracking import tracking_uri
from conftest import TINY_SPACE, search_in_process

STEPS_PER_EPOCH = 40  # digits: 1,257 training images in batches of 32
EPOCHS, MIN_EPOCHS, ETA = 0.5, 0.5 / 9, 3
RUNGS = AshaSchedule(MIN_EPOCHS, EPOCHS, ETA).rungs


def asha_config(**overrides) -> dict:
    # No accuracy floor: after 3 optimiser steps every network is near chance, and ASHA reports a
    # network under a constraint as failed, which would leave nothing to promote.
    return {"dataset": "digits", "workers": 2, "references": [], "seed": 5, "sampler": "random",
            "training": {"epochs": EPOCHS, "batch_size": 32}, "space": TINY_SPACE, "schedule": "asha",
            "asha": {"min_epochs": MIN_EPOCHS, "eta": ETA}, "constraints": {"accuracy_floor": None}, **overrides}


def load(results, study):
    return optuna.load_study(study_name=study, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(results / "optuna.journal"))))


def network_runs(results, study):
    client = MlflowClient(tracking_uri(results))
    experiment = client.get_experiment_by_name(study)
    return client, client.search_runs([experiment.experiment_id], "tags.`bitnas.role` = 'trial'", max_results=1000)


def check_promotions(study):
    """Every completed promotion went on from its predecessor's checkpoint to its own rung."""
    done = study.get_trials(states=(TrialState.COMPLETE,))
    promotions = [t for t in done if t.user_attrs.get("asha_rung", 0) > 0]
    for trial in promotions:
        previous = study.trials[trial.user_attrs["promoted_from"]]
        rung = trial.user_attrs["asha_rung"]
        assert previous.user_attrs["asha_network"] == trial.user_attrs["asha_network"]
        assert previous.user_attrs["asha_rung"] == rung - 1 and previous.params == trial.params
        assert "duplicate_of" not in trial.user_attrs  # a promotion is never "the same network as"
        metrics = trial.user_attrs["metrics"]
        assert metrics["train_steps"] == math.ceil(RUNGS[rung] * STEPS_PER_EPOCH)
        assert metrics["resumed_from_step"] == previous.user_attrs["metrics"]["train_steps"] > 0
    return promotions


def test_an_asha_search_promotes_stops_resumes_and_judges_networks_at_their_highest_rung(tmp_path, local_ray):
    results = tmp_path / "results"
    outcome, lines = search_in_process(asha_config(), results, "asha", 9)
    text = "\n".join(lines)
    assert outcome.completed == 9 and not outcome.interrupted, text  # `trials` counts new networks
    assert "promoted to rung 1/2" in text and "stopped trial(s)" in text, text
    assert "rung 0/2 (0.0556 ep)" in text
    study = load(results, "asha")
    everything = study.get_trials(states=(TrialState.COMPLETE,))
    done = [t for t in everything if t.user_attrs.get("fidelity") != "final"]
    finals = [t for t in everything if t.user_attrs.get("fidelity") == "final"]
    assert sum(t.user_attrs.get("asha_rung", 0) == 0 for t in done) == 9
    promotions = check_promotions(study)
    assert any(t.user_attrs["asha_rung"] == 1 for t in promotions)
    # The scheduler's state is in the study, and agrees with the trials
    asha = MultiObjectiveAsha.restore(study.user_attrs["asha_state"])
    assert not asha.pending() and all(not asha.promotable(k) for k in range(asha.schedule.top))
    statuses = study.user_attrs["asha_status"]
    for trial in promotions:
        assert statuses[str(trial.user_attrs["promoted_from"])] == "promoted"
    assert "stopped" in statuses.values()
    # The trials' front: no network judged at a rung below one it completed; the reported front:
    # that front retrained at the final budget (a network stopped at rung 0 may be on it).
    frame = trials_frame(study, objectives_for(SearchConfig.model_validate(asha_config()).objectives),
                         among="trials")
    front = frame[frame["pareto"]]
    superseded = {t.user_attrs["promoted_from"] for t in promotions}
    assert len(front) and not set(front["trial"]) & superseded and not front["superseded"].any()
    assert finals and set(outcome.frame[outcome.frame["pareto"]]["fidelity"]) == {"final"}
    assert {t.user_attrs["finalist_of"] for t in finals} <= set(front["trial"])
    # One MLflow run per network, holding each rung's metrics as a step
    client, runs = network_runs(results, "asha")
    networks = {t.user_attrs["asha_network"] for t in done if "asha_network" in t.user_attrs}
    duplicates = [t for t in done if "duplicate_of" in t.user_attrs]
    assert len(runs) == len(networks) + len(duplicates) + len(finals)
    for trial in promotions:
        run = next(r for r in runs if r.data.tags["bitnas.trial_number"] == str(trial.user_attrs["asha_network"]))
        assert f",{trial.number}," in run.data.tags["bitnas.asha_trials"] and run.info.status == "FINISHED"
        steps = {m.step for m in client.get_metric_history(run.info.run_id, "train_steps")}
        assert set(range(trial.user_attrs["asha_rung"] + 1)) <= steps
    # Checkpoints: none left once no rung will read them
    assert not list((results / "asha").glob("*.pt*"))


class DriverDied(Exception):
    """The driver stopping where a crash would: after asking for a promotion's trial, before dispatching it."""


@pytest.mark.parametrize("how", ["ctrl-c", "crash"])
def test_a_search_stopped_with_a_promotion_in_flight_resumes_it_from_the_saved_state(tmp_path, local_ray, how):
    results = tmp_path / "results"
    stopped: list[str] = []

    def out(line: str) -> None:  # stop as soon as the first promotion is asked for
        stopped.append(line)
        if "promoted to rung" in line and not any("promoted to rung" in s for s in stopped[:-1]):
            if how == "crash":  # its trial is left RUNNING, as a killed driver leaves it
                raise DriverDied(line)
            os.kill(os.getpid(), signal.SIGINT)

    import yaml

    from bitnas.search.driver import run_search

    study_name = f"asha-{how}"
    path = tmp_path / "asha.yaml"
    path.write_text(yaml.safe_dump(asha_config()))
    config = load_config(path, {"results": str(results), "study": study_name, "trials": 6})
    if how == "crash":
        with pytest.raises(DriverDied):
            run_search(config, out=out)
    else:
        assert run_search(config, out=out).interrupted, "\n".join(stopped)
    study = load(results, study_name)
    if how == "crash":
        assert [t.user_attrs["asha_rung"] for t in study.get_trials(states=(TrialState.RUNNING,))] == [1]
    before = MultiObjectiveAsha.restore(study.user_attrs["asha_state"])
    pending = before.pending()
    assert pending, "\n".join(stopped)  # handed out, never reported
    assert list((results / "asha").glob("*.pt"))  # the checkpoints it goes on from

    outcome, lines = search_in_process(asha_config(), results, study_name, 6, folder=tmp_path)
    text = "\n".join(lines)
    assert outcome.completed == 6 and not outcome.interrupted, text
    study = load(results, study_name)
    after = MultiObjectiveAsha.restore(study.user_attrs["asha_state"])
    # the restored scheduler kept every earlier result, and the pending promotion ran and was reported
    for k, rung in enumerate(before.state()["rungs"]):
        assert after.state()["rungs"][k]["results"][:len(rung["results"])] == rung["results"]
    assert not after.pending()
    for job in pending:
        reran = [t for t in study.get_trials(states=(TrialState.COMPLETE,))
                 if t.user_attrs.get("asha_network") == job.trial_id and t.user_attrs.get("asha_rung") == job.rung_index]
        assert len(reran) == 1
    check_promotions(study)
    assert not study.get_trials(states=(TrialState.RUNNING,))


@pytest.mark.parametrize("overrides,message", [
    ({"evaluation": "supernet"}, "schedule asha needs evaluation scratch"),
    ({"asha": {"min_epochs": 1.0}}, r"asha.min_epochs \(1\) must be below training.epochs \(1\)"),
])
def test_asha_settings_that_make_no_sense_are_one_line(tmp_path, overrides, message):
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"schedule": "asha", **overrides}))
    with pytest.raises(ConfigError, match=message) as raised:
        load_config(path)
    assert "\n" not in str(raised.value)


def test_asha_ranks_a_network_over_a_constraint_as_failed_and_refuses_a_changed_ladder(tmp_path):
    """The values ASHA ranks are the study's, NaN for a network over a budget or never trained;
    a study scheduled with one ladder is not resumed with another."""
    from bitnas.search.config import SearchConfig
    from bitnas.search.objectives import objectives_for
    from bitnas.search.scheduling import AshaPlan

    config = SearchConfig.model_validate(asha_config(results=str(tmp_path), constraints={"max_latency_ms": 1.0,
                                                                                         "accuracy_floor": None}))
    objectives = objectives_for(config.objectives)
    study = optuna.create_study(directions=[o.direction for o in objectives])
    plan = AshaPlan(config, study, objectives, 10, out=lambda line: None)
    fast = {"val_accuracy": 0.5, "latency_ms": 0.5, "energy_uj": 1.0}
    assert plan.values(fast) == [0.5, 0.5, 1.0]
    assert all(math.isnan(v) for v in plan.values({**fast, "latency_ms": 2.0}))
    assert all(math.isnan(v) for v in plan.values({**fast, "skipped_by_proxy": 1.0}))
    plan.reported(0, 0, 0, fast)
    assert study.user_attrs["asha_state"]["rungs"][0]["results"] == [{"trial_id": 0, "values": [0.5, 0.5, 1.0]}]
    changed = config.model_copy(update={"asha": config.asha.model_copy(update={"eta": 2})})
    with pytest.raises(ConfigError, match="was scheduled with asha rungs"):
        AshaPlan(changed, study, objectives, 10)
