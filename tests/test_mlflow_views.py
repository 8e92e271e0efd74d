"""The MLflow record of a search, read back through MlflowClient after a normal run and after a
resumed one: one study run, one run per trial (never two), tags the search box can use (`pareto`
kept current, blocks, bits, target, sampler), per-epoch metrics with steps, the artefacts of each
trial and the study's views.

The searches run in-process (run_search on the session's Ray); the read-only tests use the
session's `finished_study` (tests/conftest.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from bitnas.search.tracking import tracking_uri
from servers import PG_URL, free_port, postgres_answers, wait_until_healthy
from conftest import SHARED_STUDY, SHARED_TRIALS, search_in_process, shared_study_config

STUDY = SHARED_STUDY
TRIAL_ARTEFACTS = {"genotype.json", "genotype.txt", "costs.csv", "latency.json", "energy.json", "weights.safetensors"}
STUDY_VIEWS = {"pareto.csv", "trials.csv", "pareto.png", "pareto.html", "pairwise.png", "hypervolume.png",
               "hypervolume.csv", "parallel.html", "config.json"}


def runs_of(results: Path, study: str = STUDY):
    client = MlflowClient(tracking_uri(results))
    experiment = client.get_experiment_by_name(study)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return (client, experiment, [r for r in runs if r.data.tags.get("bitnas.role") == "study"],
            [r for r in runs if r.data.tags.get("bitnas.role") == "trial"])


def study_file(client: MlflowClient, run_id: str, name: str, into: Path) -> Path:
    return Path(client.download_artifacts(run_id, name, str(into)))


def check_structure(results: Path, completed: int, scratch: Path) -> None:
    client, experiment, parents, trials = runs_of(results)
    assert len(parents) == 1, "one study run, found again on resume"
    parent = parents[0]
    numbers = [int(r.data.tags["bitnas.trial_number"]) for r in trials]
    assert sorted(numbers) == list(range(completed)), "one run per trial number, never two"
    assert STUDY_VIEWS <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    history = client.get_metric_history(parent.info.run_id, "hypervolume")
    assert max(m.step for m in history) == completed

    pareto = pd.read_csv(study_file(client, parent.info.run_id, "pareto.csv", scratch))
    front = {int(n) for n in pareto["trial"]}
    assert front, "a study with completed trials has a non-empty front"
    for run in trials:
        tags, number = run.data.tags, int(run.data.tags["bitnas.trial_number"])
        assert run.info.status == "FINISHED"
        assert tags["pareto"] == ("true" if number in front else "false")
        assert tags["target"] == "cpu" and tags["sampler"] == "random" and tags["dataset"] == "digits"
        assert set(tags["blocks"].split(",")) <= {"float", "binary"}
        assert set(tags["weight_bits"].split(",")) <= {"1", "32"}
        # A duplicate reuses an identical network's result (and its artefacts): it keeps the genotype.
        expected = {"genotype.json", "genotype.txt"} if "bitnas.duplicate_of" in tags else TRIAL_ARTEFACTS
        assert expected <= {a.path for a in client.list_artifacts(run.info.run_id)}
        if "bitnas.duplicate_of" not in tags:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy_epoch")]
            assert steps and steps == list(range(1, len(steps) + 1))
        assert {"stem_width", "s0_block", "s1_width"} <= set(run.data.params)
    # The search box finds exactly the front.
    found = client.search_runs([experiment.experiment_id], "tags.pareto = 'true'", max_results=1000)
    assert {int(r.data.tags["bitnas.trial_number"]) for r in found} == front

    one = next(r.info.run_id for r in trials if "bitnas.duplicate_of" not in r.data.tags)
    costs = pd.read_csv(study_file(client, one, "costs.csv", scratch))
    assert {"name", "kind", "macs", "weight_bits", "input_bits", "energy_pj"} <= set(costs.columns)
    energy = json.loads(study_file(client, one, "energy.json", scratch).read_text())
    assert energy["source"] and energy["energy_uj"] > 0
    if energy["source"].startswith("analytic"):  # the per-layer figures add up to the trial's estimate
        assert abs(sum(energy["by_layer_kind_and_bits_pj"].values()) / 1e6 - energy["energy_uj"]) <= 1e-6 * energy["energy_uj"]
    latency = json.loads(study_file(client, one, "latency.json", scratch).read_text())
    assert {"target", "engine", "cpu", "threads", "runs"} <= set(latency)


def test_structure_of_the_shared_finished_study(finished_study, tmp_path):
    check_structure(finished_study, SHARED_TRIALS, tmp_path)


def test_structure_after_a_search_and_after_resuming_it(local_ray, tmp_path):
    results = tmp_path / "results"
    outcome, lines = search_in_process(shared_study_config(), results, STUDY, 3)
    assert outcome.completed == 3, "\n".join(lines)
    check_structure(results, 3, tmp_path / "first")
    _, _, _, before = runs_of(results)
    params_before = {r.info.run_id: dict(r.data.params) for r in before}

    outcome, lines = search_in_process(shared_study_config(), results, STUDY, 4)
    assert outcome.completed == 4 and outcome.failed_this_run == 0, "\n".join(lines)
    assert any("3/4 trials completed" in line for line in lines), lines
    check_structure(results, 4, tmp_path / "resumed")
    _, _, _, after = runs_of(results)
    assert len(after) == 4
    for run in after:  # params of earlier trials logged once, unchanged by the resume
        if run.info.run_id in params_before:
            assert dict(run.data.params) == params_before[run.info.run_id]
    assert set(params_before) < {r.info.run_id for r in after}


def test_study_views_show_genotypes_grey_infeasible_trials_and_name_choices(finished_study, tmp_path):
    from bitnas.search.objectives import objectives_for
    from bitnas.search.plots import write_pareto_html

    client, _, parents, _ = runs_of(finished_study)
    parent = parents[0].info.run_id
    trials = pd.read_csv(study_file(client, parent, "trials.csv", tmp_path))
    html = study_file(client, parent, "pareto.html", tmp_path).read_text()
    for _, row in trials.iterrows():  # hover text: each network's stages and its metrics
        assert row["genotype"].split(" | ")[1] in html and f"trial {int(row['trial'])}" in html
    parallel = study_file(client, parent, "parallel.html", tmp_path).read_text()
    assert "parcoords" in parallel and "s0_block" in parallel

    # A trial over a budget is drawn apart, in grey, with the budget it breaks.
    trials["feasible"] = [False] + [True] * (len(trials) - 1)
    trials["violates"] = ["max_latency_ms"] + [""] * (len(trials) - 1)
    trials["pareto"] = [False] + list(trials["pareto"][1:])
    write_pareto_html(trials, objectives_for(["accuracy", "latency_ms", "energy_uj"]), tmp_path / "p.html", "t")
    text = (tmp_path / "p.html").read_text()
    assert "infeasible (over a budget)" in text and "INFEASIBLE (max_latency_ms)" in text


# --- cluster tracking: a real `mlflow server` on loopback whose backend store is PostgreSQL -------

@pytest.fixture
def mlflow_server(tmp_path):
    """`mlflow server` on 127.0.0.1 with its tables in a fresh PostgreSQL schema (dropped after)."""
    import os
    import uuid

    import psycopg

    schema = f"bitnas_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URL, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    port = free_port()
    backend = f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(["mlflow", "server", "--backend-store-uri", backend, "--host", "127.0.0.1", "--port",
                               str(port), "--workers", "1", "--serve-artifacts",
                               "--artifacts-destination", str(tmp_path / "server-artifacts")],
                              stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MLFLOW_HOST": "127.0.0.1"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, server, tmp_path / "server.log", "mlflow server")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        with psycopg.connect(PG_URL, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.mark.skipif(not postgres_answers(), reason="no PostgreSQL server answers on 127.0.0.1:5432")
def test_search_and_export_through_a_tracking_server_backed_by_postgresql(mlflow_server, bitnas_main, tmp_path):
    results = tmp_path / "results"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(shared_study_config(trials=2)))
    done = bitnas_main("search", "--config", config, "--results", results, "--study", "served",
                       "--tracking-uri", mlflow_server)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert f"open the MLflow UI:  {mlflow_server}" in done.stdout
    assert not (results / "mlflow.db").exists(), "runs go to the server, not to the local store"
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("served")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    roles = sorted(r.data.tags.get("bitnas.role") for r in runs)
    assert roles == ["study", "trial", "trial"]
    study = next(r for r in runs if r.data.tags["bitnas.role"] == "study")
    assert {"pareto.csv", "pareto.html"} <= {a.path for a in client.list_artifacts(study.info.run_id)}
    # Export reads the weights back through the server (the study remembers its tracking URI).
    done = bitnas_main("export", "--study", "served", "--results", results, "--trial", "0",
                       "--register", "served-model")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["exported", str(results / "export" / "served" / "trial-0"),
                                   "(registered", "as", "served-model)"]
    assert (results / "export" / "served" / "trial-0" / "model.bitnas.npz").is_file()
    assert not (results / "mlflow.db").exists(), "export reads and registers through the server too"
    assert client.get_registered_model("served-model").description.startswith("# bitnas model")
