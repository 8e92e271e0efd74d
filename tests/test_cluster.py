"""Cluster mode by configuration alone: the study in PostgreSQL (the server on 127.0.0.1:5432,
database `test`; skipped where none answers), and trials placed by a custom resource on a
multi-node Ray cluster on loopback. Searches on the session's Ray run in-process; those that join
a cluster of their own (`--ray-address`) run the real `bitnas search` command in a subprocess."""

import subprocess
import uuid

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from servers import PG_URL, postgres_answers

SPACE = {"blocks": ["float", "binary"], "kernels": [3], "stem_widths": [4, 8],
         "stages": [{"stride": 1, "widths": [4, 8], "depths": [1]}, {"stride": 2, "widths": [8, 16], "depths": [1]}]}


def write_config(folder, **overrides):
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump({"dataset": "digits", "training": {"epochs": 0.5}, "space": SPACE, "references": [],
                                    **overrides}))
    return path


@pytest.mark.skipif(not postgres_answers(), reason="no PostgreSQL server answers on 127.0.0.1:5432")
def test_postgres_storage_with_two_workers_counts_exactly_and_resumes_by_name(tmp_path, bitnas_main):
    study_name = f"pg-{uuid.uuid4().hex[:8]}"
    config = write_config(tmp_path, workers=2)
    results = tmp_path / "results"
    command = ["search", "--config", str(config), "--results", str(results), "--study", study_name,
               "--storage", PG_URL]
    try:
        done = bitnas_main(*command, "--trials", "4")
        assert done.returncode == 0, done.stderr[-3000:]
        assert not (results / "optuna.journal").exists()  # the study went to PostgreSQL, not the journal

        # Plain Optuna reads a bitnas study: named objectives, genotype and metrics per trial.
        study = optuna.load_study(study_name=study_name, storage=PG_URL)
        assert study.metric_names == ["accuracy", "latency_ms", "energy_uj"]
        assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 4 and len(study.trials) == 4
        for trial in study.trials:
            assert {"genotype", "genotype_hash", "metrics"} <= set(trial.user_attrs)
            assert trial.values[0] == trial.user_attrs["metrics"]["val_accuracy"]

        again = bitnas_main(*command, "--trials", "6")
        assert again.returncode == 0, again.stderr[-3000:]
        assert "4/6 trials completed" in again.stdout
        assert len(optuna.load_study(study_name=study_name, storage=PG_URL).get_trials(states=(TrialState.COMPLETE,))) == 6

        exported = bitnas_main("export", "--study", study_name, "--results", results, "--storage", PG_URL,
                               "--trial", "0")
        assert exported.returncode == 0, exported.stderr[-2000:]
        assert (results / "export" / study_name / "trial-0" / "model.onnx").is_file()
    finally:
        if study_name in optuna.get_all_study_names(PG_URL):
            optuna.delete_study(study_name=study_name, storage=PG_URL)


def test_unreachable_storage_is_one_line(tmp_path, bitnas_main):
    done = bitnas_main("search", "--results", tmp_path / "r", "--trials", "1",
                       "--storage", "postgresql://nobody@127.0.0.1:1/none")
    assert done.returncode == 2
    assert done.stderr.startswith("bitnas: error: cannot open study storage postgresql://nobody@127.0.0.1:1/none")
    assert done.stderr.count("\n") == 1
    assert not (tmp_path / "r").exists()  # nothing created for a study that could not be opened


@pytest.fixture(scope="module")
def device_cluster():
    """A Ray cluster of its own on loopback: a head node (2 CPUs) and a "device" node (1 CPU and the
    custom resource `device`), which the searches below join with `--ray-address`."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    try:
        device = cluster.add_node(num_cpus=1, resources={"device": 1})
        cluster.wait_for_nodes()
        yield cluster, device
    finally:
        cluster.shutdown()


def test_trials_run_on_the_node_that_offers_their_resource(tmp_path, device_cluster):
    cluster, device = device_cluster
    config = write_config(tmp_path, workers=1, ray={"resources": {"device": 1}})
    done = subprocess.run(["bitnas", "search", "--config", str(config), "--results", str(tmp_path / "results"),
                           "--study", "placed", "--trials", "2", "--ray-address", cluster.address],
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"joining the Ray cluster at {cluster.address}" in done.stdout
    study = optuna.load_study(study_name="placed", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "results" / "optuna.journal"))))
    nodes = {t.user_attrs["node"].split("/")[-1] for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert nodes == {device.node_id[:12]}
    assert all(address.startswith("127.0.0.1") for address in [cluster.address])


def test_latency_is_measured_on_the_node_that_is_the_target_device(tmp_path, device_cluster):
    cluster, device = device_cluster
    config = write_config(tmp_path, workers=2, latency={"resource": "device", "timeout_s": 300})
    done = subprocess.run(["bitnas", "search", "--config", str(config), "--results", str(tmp_path / "results"),
                           "--study", "measured-on-device", "--trials", "2", "--ray-address", cluster.address],
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    study = optuna.load_study(study_name="measured-on-device", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "results" / "optuna.journal"))))
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 2
    for trial in trials:
        assert trial.user_attrs["latency"]["node"].endswith(device.node_id[:12])
        assert trial.values[1] == trial.user_attrs["latency"]["median_ms"] > 0


def test_a_latency_device_no_node_offers_is_refused_at_once(tmp_path, bitnas_main):
    config = write_config(tmp_path, latency={"resource": "rpi4"})
    done = bitnas_main("search", "--config", config, "--results", tmp_path / "results", "--study", "no-device",
                       "--trials", "1")
    assert done.returncode == 2
    assert "latency is measured on rpi4=1 but no node of the Ray cluster offers it" in done.stderr
    assert done.stderr.count("\n") == 1
