"""Export selection rules on a real searched study (the session's `finished_study`): the Pareto
front by default, one trial, the best by a metric within budgets; a selection that matches
nothing is one line and exit 2; `--register` puts the export in the MLflow model registry with the
model card as its description."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from bitnas.export import ExportOptions, Selection, export_study
from bitnas.search.objectives import objectives_for
from bitnas.search.report import trials_frame
from bitnas.search.tracking import tracking_uri
from conftest import SHARED_STUDY as STUDY

EXPORT_FILES = {"README.md", "genotype.json", "weights.safetensors", "model.onnx", "model.bitnas.npz", "metrics.json",
                "latency.json", "pareto.png"}


def load(results: Path) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(results / "optuna.journal"))))


@pytest.fixture
def results(finished_study) -> Path:
    return finished_study


@pytest.fixture
def bitnas(bitnas_main):
    return bitnas_main


def test_default_exports_the_feasible_front_with_every_file(results):
    study = load(results)
    frame = trials_frame(study, objectives_for(study.user_attrs["objectives"]))
    written = export_study(results, STUDY)
    assert {p.name for p in written} == {f"trial-{int(n)}" for n in frame.loc[frame["pareto"], "trial"]}
    for folder in written:
        assert EXPORT_FILES <= {p.name for p in folder.iterdir()}
        card = (folder / "README.md").read_text()
        assert "test accuracy" in card and "SIMD flags" in card and "Energy source" in card and "](pareto.png)" in card
        metrics = json.loads((folder / "metrics.json").read_text())
        assert 0 <= metrics["test_accuracy"] <= 1


def test_best_accuracy_within_a_latency_budget(results, bitnas):
    study = load(results)
    completed = [t for t in study.get_trials(states=(TrialState.COMPLETE,)) if "duplicate_of" not in t.user_attrs]
    latencies = sorted(t.user_attrs["metrics"]["latency_ms"] for t in completed)
    budget = latencies[len(latencies) // 2]
    within = [t for t in completed if t.user_attrs["metrics"]["latency_ms"] <= budget]
    best = max(within, key=lambda t: (t.user_attrs["metrics"]["val_accuracy"], -t.number))
    done = bitnas("export", "--study", STUDY, "--results", str(results), "--best", "accuracy",
                  "--max-latency-ms", repr(budget))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["exported", str(results / "export" / STUDY / f"trial-{best.number}")]
    assert f"best accuracy within max_latency_ms {budget:g}" in (
        results / "export" / STUDY / f"trial-{best.number}" / "README.md").read_text()


def test_selections_that_match_nothing_are_one_line(results, bitnas):
    done = bitnas("export", "--study", STUDY, "--results", str(results), "--max-latency-ms", "1e-9")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "no completed trial of study 'views' matches the Pareto front within max_latency_ms 1e-09" in done.stderr
    done = bitnas("export", "--study", STUDY, "--results", str(results), "--best", "speed")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--best: unknown metric 'speed'" in done.stderr
    done = bitnas("export", "--study", STUDY, "--results", str(results), "--trial", "99")
    assert done.returncode == 2 and done.stderr == "bitnas: error: study 'views' has no trial 99 (it has trials 0-2)\n"
    assert done.stdout == ""


def test_one_trial_by_number_retrained_and_registered_with_its_card(results):
    first = export_study(results, STUDY, options=ExportOptions(selection=Selection(trial=1), epochs=0.3,
                                                               register="views-best"))[0]
    assert first.name == "trial-1"
    metrics = json.loads((first / "metrics.json").read_text())
    assert metrics["retrained_epochs"] == 0.3 and 0 <= metrics["retrained_val_accuracy"] <= 1
    assert "Retrained from scratch for 0.3 epochs" in (first / "README.md").read_text()
    again = export_study(results, STUDY, options=ExportOptions(selection=Selection(best="energy_uj"),
                                                               register="views-best"))[0]
    client = MlflowClient(tracking_uri(results))
    model = client.get_registered_model("views-best")
    versions = sorted(client.search_model_versions("name = 'views-best'"), key=lambda v: int(v.version))
    assert [str(v.version) for v in versions] == ["1", "2"]
    assert model.description == (again / "README.md").read_text()
    assert versions[0].description == (first / "README.md").read_text()
    trial = versions[0].tags["bitnas.trial_number"]
    assert first.name == f"trial-{trial}"
    run = client.get_run(versions[0].run_id)
    assert run.data.tags["bitnas.trial_number"] == trial
    # The version is the pyfunc model logged on the trial's run, the export's files its artefacts.
    model_id = versions[0].source.removeprefix("models:/")
    assert client.get_logged_model(model_id).source_run_id == versions[0].run_id
    files = {a.path for a in client.list_logged_model_artifacts(model_id, f"artifacts/{first.name}")}
    assert {f"artifacts/{first.name}/model.bitnas.npz", f"artifacts/{first.name}/README.md"} <= files
