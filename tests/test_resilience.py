"""A search that survives: a trial that raises, a Ray worker killed mid-trial, the driver killed
mid-study, identical networks, constraints, a resource no node offers. Each test drives the real
`bitnas search` command (real Ray, Optuna journal, MLflow) on sklearn's 8x8 digits to stay quick:
in this process on the session's Ray (tests/conftest.py), except where the driver itself is killed,
which takes a process of its own.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import psutil
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from bitnas.search.objectives import objectives_for
from bitnas.search.pareto import dominates
from bitnas.search.tracking import tracking_uri
from bitnas.spaces import BLOCK_INFO, BLOCKS, SpaceConfig, genotype_costs
from conftest import TINY_SPACE


def write_config(folder: Path, **overrides) -> Path:
    config = {"dataset": "digits", "workers": 2, "training": {"epochs": 0.5, "batch_size": 32},
              "space": TINY_SPACE, "references": [], **overrides}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def search_args(config: Path, results: Path, study: str, trials: int) -> list[str]:
    return ["search", "--config", str(config), "--results", str(results), "--study", study, "--trials", str(trials)]


def load(results: Path, study: str) -> optuna.Study:
    return optuna.load_study(study_name=study, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(results / "optuna.journal"))))


def trial_runs(results: Path, study: str) -> list:
    client = MlflowClient(tracking_uri(results))
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id], "tags.`bitnas.role` = 'trial'", max_results=1000)
    return runs


def states(study: optuna.Study) -> dict:
    return {state: len(study.get_trials(states=(state,))) for state in TrialState}


@pytest.fixture
def nan_block_plugin():
    """tests/plugins/nan_block_plugin.py, forgotten again by this process afterwards (its block
    registered here must not show up in other tests' list of blocks)."""
    yield "nan_block_plugin"
    sys.modules.pop("nan_block_plugin", None)
    BLOCKS.pop("nan_float", None)
    BLOCK_INFO.pop("nan_float", None)


def test_a_trial_that_raises_fails_alone_and_the_search_goes_on(tmp_path, bitnas_main, nan_block_plugin):
    # A real block, from a user's plugin (tests/plugins/nan_block_plugin.py), whose output is NaN:
    # training stops with a clear error.
    space = {**TINY_SPACE, "blocks": ["float", "nan_float"]}
    config = write_config(tmp_path, space=space, plugins=[nan_block_plugin], max_failures=50,
                          sampler="random", seed=3)
    results = tmp_path / "results"
    done = bitnas_main(*search_args(config, results, "raising", 3))
    assert done.returncode == 0, done.stderr[-3000:]
    study = load(results, "raising")
    counts = states(study)
    assert counts[TrialState.COMPLETE] == 3 and counts[TrialState.RUNNING] == 0
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert failed, "seed 3 samples the NaN block at least once"
    assert all("FloatingPointError: training diverged" in t.user_attrs["fail_reason"] for t in failed)
    assert f"trial {failed[0].number} failed: FloatingPointError" in done.stdout
    runs = {int(r.data.tags["bitnas.trial_number"]): r for r in trial_runs(results, "raising")}
    assert sorted(runs) == [t.number for t in study.trials]  # one run per trial, failed ones included
    for trial in failed:
        assert runs[trial.number].info.status == "FAILED"
        assert "training diverged" in runs[trial.number].data.tags["bitnas.error"]


def _evaluating_workers() -> list[psutil.Process]:
    """Workers of the session's Ray (descendants of this process) running a trial now: a worker's
    process title is `ray::evaluate_trial` while it runs one."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if "ray::evaluate" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:
            continue
    return found


def _journal_states(results: Path, study: str) -> dict:
    """The trial states of `study` as its journal has them now ({} before the study exists)."""
    if not (results / "optuna.journal").is_file():
        return {}
    try:
        return states(load(results, study))
    except KeyError:  # the journal exists but the study is not created in it yet
        return {}


def test_a_worker_killed_mid_trial_is_retried_and_the_study_completes(tmp_path, bitnas_main):
    config = write_config(tmp_path, workers=1, training={"epochs": 4, "batch_size": 16})
    results = tmp_path / "results"
    killed: list[int] = []

    def kill_the_worker_of_the_running_trial():
        # Waits for the observable state: the study has a trial RUNNING and a worker is evaluating it.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            victims = _evaluating_workers()
            if victims and _journal_states(results, "worker-killed").get(TrialState.RUNNING):
                victims[0].send_signal(signal.SIGKILL)
                killed.append(victims[0].pid)
                return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_the_worker_of_the_running_trial, daemon=True)
    killer.start()
    done = bitnas_main(*search_args(config, results, "worker-killed", 2))
    killer.join(timeout=10)
    assert killed, "no Ray worker of the search started evaluating"
    assert done.returncode == 0, done.stderr[-3000:]
    assert "worker lost; running it again, attempt 2" in done.stdout

    study = load(results, "worker-killed")
    counts = states(study)
    assert counts[TrialState.COMPLETE] == 2 and counts[TrialState.FAIL] == 1 and counts[TrialState.RUNNING] == 0
    failed = study.get_trials(states=(TrialState.FAIL,))[0]
    assert "WorkerCrashedError" in failed.user_attrs["fail_reason"]
    retried = [t for t in study.trials if t.user_attrs.get("retry_of") == failed.number]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE and retried[0].params == failed.params
    statuses = sorted(r.info.status for r in trial_runs(results, "worker-killed"))
    assert statuses == ["FAILED", "FINISHED", "FINISHED"]


def test_driver_killed_mid_study_resumes_without_losing_or_rerunning_anything(tmp_path, bitnas_main):
    config = write_config(tmp_path, training={"epochs": 2, "batch_size": 16})
    results = tmp_path / "results"
    args = search_args(config, results, "driver-killed", 4)
    # The driver needs a process of its own to be killed; its output goes to a file (no pipe to fill).
    with (tmp_path / "out.txt").open("w") as out:
        process = subprocess.Popen(["bitnas", *args], stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        # Wait for the observable state: a trial completed ("[1/4]") and both workers busy with a trial
        # whose MLflow run exists (a run is created just after its trial is asked, before it is
        # dispatched, and stays RUNNING until the trial ends): the driver is waiting on Ray then.
        deadline, running = time.monotonic() + 300, []
        while time.monotonic() < deadline and process.poll() is None and len(running) < 2:
            time.sleep(0.2)
            if any(line.startswith("[1/4]") for line in (tmp_path / "out.txt").read_text().splitlines()):
                running = [r for r in trial_runs(results, "driver-killed") if r.info.status == "RUNNING"]
        # Two in flight; a third may be open for a moment (a free worker gets its next trial before
        # the finished one is recorded).
        assert process.poll() is None and len(running) >= 2, (tmp_path / "out.txt").read_text()[-3000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the driver and its local Ray, as if the machine died
        process.wait(timeout=60)

    before = load(results, "driver-killed")
    completed_before = {t.number: t.values for t in before.get_trials(states=(TrialState.COMPLETE,))}
    running_before = [t.number for t in before.get_trials(states=(TrialState.RUNNING,))]
    assert completed_before and running_before
    runs_before = {r.data.tags["bitnas.trial_number"]: r.info.run_id for r in trial_runs(results, "driver-killed")}

    done = bitnas_main(*args)  # resumed by another driver: this process, on the session's Ray
    assert done.returncode == 0, done.stderr[-3000:]
    assert "queued their networks again" in done.stdout

    after = load(results, "driver-killed")
    counts = states(after)
    assert counts[TrialState.COMPLETE] == 4 and counts[TrialState.RUNNING] == 0
    for number, values in completed_before.items():  # nothing completed was lost or run again
        assert after.trials[number].state == TrialState.COMPLETE and after.trials[number].values == values
    for number in running_before:
        assert after.trials[number].state == TrialState.FAIL
        assert any(t.user_attrs.get("retry_of") == number for t in after.trials)
    runs = trial_runs(results, "driver-killed")
    numbers = [r.data.tags["bitnas.trial_number"] for r in runs]
    assert len(numbers) == len(set(numbers)) == len(after.trials)  # one run per trial, no duplicates
    by_number = {int(r.data.tags["bitnas.trial_number"]): r for r in runs}
    for number in completed_before:
        assert by_number[number].info.run_id == runs_before[str(number)]
    for number in running_before:
        assert by_number[number].info.status == "KILLED"


def test_identical_networks_are_trained_once_and_constraints_keep_the_front_feasible(tmp_path, bitnas_main):
    # Two networks only (stem width 4 or 8): five trials must repeat them. The size budget lies
    # between the two, so exactly one of them is feasible.
    space = {"blocks": ["float"], "kernels": [3], "stem_widths": [4, 8], "stem_pools": [False], "stem_bits": [32], "head_widths": [0],
             "head_bits": [32], "stages": [{"stride": 1, "widths": [8], "depths": [1]}]}
    choices = SpaceConfig(**space).choices()
    assert [len(values) for name, values in choices.items() if name != "stem_width"] == [1] * (len(choices) - 1)
    sizes = [genotype_costs(SpaceConfig(**space).decode(
        {name: (stem if name == "stem_width" else values[0]) for name, values in choices.items()},
        input_size=8, in_channels=1, num_classes=10)).size_kb for stem in (4, 8)]
    budget = sum(sizes) / 2
    # The size budget alone decides feasibility here: the accuracy floor is off, because these 8x8
    # networks trained briefly may sit near chance.
    config = write_config(tmp_path, space=space, sampler="random", seed=1, constraints={"max_size_kb": budget, "accuracy_floor": None})
    results = tmp_path / "results"
    done = bitnas_main(*search_args(config, results, "dedup", 5))
    assert done.returncode == 0, done.stderr[-3000:]
    study = load(results, "dedup")
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 5
    originals = [t for t in trials if "duplicate_of" not in t.user_attrs]
    duplicates = [t for t in trials if "duplicate_of" in t.user_attrs]
    assert len({t.user_attrs["genotype_hash"] for t in originals}) == len(originals) <= 2 and len(duplicates) >= 3
    for trial in duplicates:
        source = study.trials[trial.user_attrs["duplicate_of"]]
        assert source.user_attrs["genotype_hash"] == trial.user_attrs["genotype_hash"] and source.values == trial.values
    client = MlflowClient(tracking_uri(results))
    runs = trial_runs(results, "dedup")
    trained = [r for r in runs if "weights.safetensors" in {a.path for a in client.list_artifacts(r.info.run_id)}]
    assert len(runs) == 5 and len(trained) == len(originals)  # trained once per distinct network

    assert len(originals) == 2, "seed 1 samples both networks"
    small, large = sorted(originals, key=lambda t: t.user_attrs["metrics"]["size_kb"])
    assert small.user_attrs["metrics"]["size_kb"] < budget < large.user_attrs["metrics"]["size_kb"]
    assert small.constraints["max_size_kb"] <= 0 < large.constraints["max_size_kb"]  # Optuna sees it too
    # The summary's front table shows an infeasible trial, marked, exactly when it would be on the
    # unconstrained front.
    objectives = objectives_for(["accuracy", "latency_ms", "energy_uj"])
    minimised = lambda trial: [o.minimised(v) for o, v in zip(objectives, trial.values)]  # noqa: E731
    table = done.stdout[done.stdout.index("Pareto front of study 'dedup'"):]
    if dominates(minimised(small), minimised(large)) or minimised(small) == minimised(large):
        assert "INFEASIBLE" not in table
    else:
        assert "INFEASIBLE (size_kb > max_size_kb)" in table
    parent = client.search_runs([client.get_experiment_by_name("dedup").experiment_id], "tags.`bitnas.role` = 'study'")[0]
    pareto = Path(client.download_artifacts(parent.info.run_id, "pareto.csv")).read_text()
    front = [int(line.split(",")[0]) for line in pareto.splitlines()[1:]]
    assert large.number not in front and small.number in front

    exported = bitnas_main("export", "--study", "dedup", "--results", results)
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert exported.stdout.split() == ["exported", str(results / "export" / "dedup" / f"trial-{small.number}")]
    assert [p.name for p in (results / "export" / "dedup").iterdir()] == [f"trial-{small.number}"]


def test_a_resource_no_node_offers_is_refused_at_once(tmp_path, bitnas_main):
    config = write_config(tmp_path, ray={"resources": {"rpi4": 1}})
    done = bitnas_main(*search_args(config, tmp_path / "results", "no-device", 2))
    assert done.returncode == 2
    assert "each trial needs rpi4=1 but no node of the Ray cluster offers it" in done.stderr
    assert done.stderr.count("\n") == 1
    study = load(tmp_path / "results", "no-device")
    assert study.trials == []
    # the driver's energy is kept even so (a refusal this quick can round to 0 Wh; its time cannot)
    total = study.user_attrs["footprint_total"]
    assert total["driver_seconds"] > 0 and total["driver_wh"] >= 0


def test_a_trial_killed_before_its_run_was_opened_gets_one_on_recovery(tmp_path):
    """The kill window between asking for a trial and opening its MLflow run: recovery fails the
    trial, gives it its own run (KILLED), and queues its network again, so every trial has one run."""
    from bitnas.search.config import SearchConfig
    from bitnas.search.footprint import StudyFootprint
    from bitnas.search.storage import open_storage
    from bitnas.search.study import recover_interrupted_trials
    from bitnas.search.tracking import StudyTracker
    from bitnas.search.trial_records import TrialRecorder

    config = SearchConfig(results=str(tmp_path), study="window", footprint={"enabled": False})
    objectives = objectives_for(config.objectives)
    study = optuna.create_study(study_name="window", storage=open_storage(tmp_path),
                                directions=["maximize", "minimize", "minimize"])
    asked = study.ask()
    asked.suggest_categorical("stem_width", [8, 16])  # asked, then the driver died: no run was opened
    tracker = StudyTracker(tmp_path, "window", {}, list(config.objectives))
    recorder = TrialRecorder(study, tracker, objectives, config, StudyFootprint(study, tracker, config), 10)
    lines = []
    recover_interrupted_trials(study, tracker, recorder, lines.append)
    assert study.trials[asked.number].state == TrialState.FAIL and "queued their networks again" in lines[0]
    runs = trial_runs(tmp_path, "window")
    assert [r.data.tags["bitnas.trial_number"] for r in runs] == [str(asked.number)]
    assert runs[0].info.status == "KILLED" and runs[0].data.params["stem_width"] == str(asked.params["stem_width"])
