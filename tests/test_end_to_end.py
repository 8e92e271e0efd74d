"""The whole path through the real command: search (real Ray, Optuna journal, MLflow sqlite store),
resume, Ctrl-C, export, and the exported ONNX file run in onnxruntime.

One small study is shared by the tests of this module (they run in file order).
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import onnxruntime
import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from safetensors.torch import load_file

from bitnas.evaluators import load_dataset
from bitnas.search.tracking import tracking_uri
from bitnas.spaces import Genotype, build_model
from bitnas.search.config import SearchConfig

STUDY = "e2e"
TINY_BUDGET = ["--epochs", "0.05", "--workers", "2", "--seed", "1"]


def bitnas(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(["bitnas", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e") / "results"


def study_state(results: Path, study: str = STUDY):
    loaded = optuna.load_study(study_name=study, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(results / "optuna.journal"))))
    return loaded, {state: len(loaded.get_trials(states=(state,))) for state in TrialState}


def mlflow_runs(results: Path, study: str = STUDY):
    client = MlflowClient(tracking_uri(results))
    experiment = client.get_experiment_by_name(study)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("bitnas.role") == "study"]
    references = [r for r in runs if r.data.tags.get("bitnas.role") == "reference"]
    children = [r for r in runs if r.data.tags.get("bitnas.role") == "trial"]
    return client, parents, children, references


def test_search_records_every_trial_in_storage_and_mlflow(results):
    done = bitnas("search", "--study", STUDY, "--trials", "3", "--results", str(results), *TINY_BUDGET)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Pareto front of study 'e2e'" in done.stdout
    assert "mlflow ui --backend-store-uri sqlite:///" in done.stdout
    assert "[3/3]" in done.stdout
    assert "Reference architectures (same training budget and measurements):" in done.stdout

    study, counts = study_state(results)
    assert counts[TrialState.COMPLETE] == 3 and counts[TrialState.RUNNING] == 0
    assert study.metric_names == ["accuracy", "latency_ms", "energy_uj"]

    client, parents, children, references = mlflow_runs(results)
    assert len(parents) == 1
    assert len(children) == counts[TrialState.COMPLETE]
    # every small reference architecture evaluated once, with the trials' budget
    assert sorted(r.data.tags["bitnas.reference"] for r in references) == sorted(SearchConfig().references)
    assert all(r.info.status == "FINISHED" and "val_accuracy" in r.data.metrics for r in references)
    parent = parents[0]
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {
        "pareto.csv", "trials.csv", "pareto.png", "pareto.html", "config.json"}
    assert parent.data.params["trials"] == "3" and parent.data.params["training.epochs"] == "0.05"
    assert parent.data.metrics["hypervolume"] > 0
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED"
        assert {"val_accuracy", "latency_ms", "energy_uj", "params", "size_bits", "bops", "flops", "ops"} <= set(child.data.metrics)
        assert {"stem_width", "s0_block", "s0_width", "s0_depth"} <= set(child.data.params)
        artefacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"genotype.json", "weights.safetensors", "costs.csv", "latency.json"} <= artefacts
        genotype_json = Path(client.download_artifacts(child.info.run_id, "genotype.json")).read_text()
        assert Genotype.from_json(genotype_json).hash() == child.data.tags["bitnas.genotype_hash"]

    pareto_csv = Path(client.download_artifacts(parent.info.run_id, "pareto.csv")).read_text().splitlines()
    assert pareto_csv[0].startswith("trial,pareto,accuracy,latency_ms,energy_uj")
    assert 1 <= len(pareto_csv) - 1 <= 3


def test_resume_by_name_adds_trials_without_duplicating_runs(results):
    done = bitnas("search", "--study", STUDY, "--trials", "4", "--results", str(results), *TINY_BUDGET)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "3/4 trials completed" in done.stdout
    _, counts = study_state(results)
    assert counts[TrialState.COMPLETE] == 4
    _, parents, children, references = mlflow_runs(results)
    assert len(parents) == 1 and len(children) == 4 and len(references) == len(SearchConfig().references)  # not re-run
    assert sorted(int(c.data.tags["bitnas.trial_number"]) for c in children) == [0, 1, 2, 3]

    again = bitnas("search", "--study", STUDY, "--trials", "4", "--results", str(results), *TINY_BUDGET)
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_export_writes_files_that_run_in_onnxruntime(results):
    done = bitnas("export", "--study", STUDY, "--results", str(results))
    assert done.returncode == 0, done.stderr[-3000:]
    study, _ = study_state(results)
    exported = sorted((results / "export" / STUDY).iterdir())
    assert exported and all(path.name.startswith("trial-") for path in exported)
    data = load_dataset("mnist5k", 1)
    for folder in exported:
        assert {p.name for p in folder.iterdir()} == {"genotype.json", "weights.safetensors", "model.onnx",
                                                      "README.md", "metrics.json", "model.bitnas.npz",
                                                      "latency.json", "pareto.png"}
        genotype = Genotype.from_json((folder / "genotype.json").read_text())
        model = build_model(genotype)
        model.load_state_dict(load_file(str(folder / "weights.safetensors")))
        model.eval()
        images = data.test.images[:16]
        session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        got = session.run(["logits"], {"image": images.numpy()})[0]
        with torch.inference_mode():
            expected = model(images).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-3)
        card = (folder / "README.md").read_text()
        metrics = json.loads((folder / "metrics.json").read_text())
        assert 0 <= metrics["test_accuracy"] <= 1 and f"{metrics['test_accuracy']:.4f}" in card
        assert genotype.short() in card


def test_export_of_one_trial_and_of_a_missing_trial(results):
    done = bitnas("export", "--study", STUDY, "--results", str(results), "--trial", "0")
    assert done.returncode == 0 and done.stdout.strip().endswith("trial-0")
    missing = bitnas("export", "--study", STUDY, "--results", str(results), "--trial", "99")
    assert missing.returncode == 2
    assert missing.stderr == "bitnas: error: study 'e2e' has no trial 99 (it has trials 0-3)\n"


def test_ctrl_c_stops_cleanly_and_keeps_every_completed_trial(results):
    study = "interrupted"
    config = results.parent / "no-references.yaml"
    config.write_text("references: []\n")
    # A new session, as a terminal's Ctrl-C signals the whole foreground process group.
    process = subprocess.Popen(
        ["bitnas", "search", "--config", str(config), "--study", study, "--trials", "40", "--results", str(results),
         *TINY_BUDGET],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if line.startswith("[ 2/40]") or not line:
            break
    assert lines[-1].startswith("[ 2/40]"), "".join(lines) + process.stderr.read()
    os.killpg(process.pid, signal.SIGINT)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "every completed trial is kept" in out

    _, counts = study_state(results, study)
    assert counts[TrialState.COMPLETE] >= 2 and counts[TrialState.RUNNING] == 0
    _, parents, children, _ = mlflow_runs(results, study)
    assert parents[0].info.status == "KILLED"
    assert len([c for c in children if c.info.status == "FINISHED"]) == counts[TrialState.COMPLETE]
