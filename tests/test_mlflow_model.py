"""`bitnas export --register NAME` makes a real MLflow Model: `models:/NAME/1` loads with
`mlflow.pyfunc.load_model` and classifies the study's test images exactly as the export's packed
model does, `mlflow models serve` answers the same classes over HTTP, and the ONNX file is logged
in MLflow's ONNX flavour on the same run."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from bitnas.cli import main
from bitnas.evaluators import load_dataset
from bitnas.export.packed_model import load_packed_model
from bitnas.search.studies import StudyArchive
from bitnas.search.tracking import tracking_uri
from conftest import SHARED_STUDY as STUDY
from servers import free_port, stop_session, wait_until_healthy

NAME = "views-served"
TRIAL = 2
IMAGES = 16


@contextlib.contextmanager
def store(results: Path):
    """Point MLflow's global tracking URI at the study's store, and back."""
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri(results))
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def registered(finished_study) -> Path:
    """The shared study's trial, exported and registered as NAME once for this module (in-process CLI)."""
    assert main(["export", "--study", STUDY, "--results", str(finished_study), "--trial", str(TRIAL),
                 "--register", NAME]) == 0
    return finished_study / "export" / STUDY / f"trial-{TRIAL}"


@pytest.fixture(scope="module")
def test_images(finished_study) -> np.ndarray:
    """Test-split images, preprocessed as in training (what the model's signature takes)."""
    study = StudyArchive(finished_study, STUDY)
    data = load_dataset(study.dataset, study.data_seed, study.data_options())
    return data.test.images[:IMAGES].numpy()


@pytest.fixture(scope="module")
def packed_logits(registered, test_images) -> np.ndarray:
    engine, _ = load_packed_model(registered)
    return np.asarray(engine(test_images), dtype=np.float64)


def test_registered_version_is_the_logged_pyfunc_model_with_card_tags_and_signature(registered, finished_study,
                                                                                   test_images, tmp_path):
    client = MlflowClient(tracking_uri(finished_study))
    (version,) = client.search_model_versions(f"name = '{NAME}'")
    note = json.loads((registered / "registered.json").read_text())
    assert note["name"] == NAME and note["version"] == "1" and note["model_uri"] == f"models:/{NAME}/1"
    # The version's source is the logged model (the SQL registry keeps no separate model_id).
    assert version.source == note["logged_model_uri"] and version.source.startswith("models:/m-")
    model_id = version.source.removeprefix("models:/")
    assert version.description == (registered / "README.md").read_text()
    assert version.tags["bitnas.study"] == STUDY and version.tags["bitnas.trial_number"] == str(TRIAL)
    run = client.get_run(version.run_id)
    assert run.data.tags["bitnas.trial_number"] == str(TRIAL)
    logged = client.get_logged_model(model_id)
    assert logged.source_run_id == version.run_id and logged.experiment_id == run.info.experiment_id
    # Its files live in the study's store, not in a ./mlruns of whatever folder export ran in.
    assert logged.artifact_location.startswith((finished_study / "mlartifacts").resolve().as_uri())
    files = {f.path for f in client.list_logged_model_artifacts(model_id, "artifacts/trial-2")}
    assert {"artifacts/trial-2/model.bitnas.npz", "artifacts/trial-2/README.md"} <= files
    card = (registered / "README.md").read_text()
    assert f'mlflow.pyfunc.load_model("models:/{NAME}/latest")' in card
    assert f"mlflow models serve -m models:/{NAME}/latest --env-manager local" in card
    with store(finished_study):
        info = mlflow.models.get_model_info(f"models:/{NAME}/1")
        assert mlflow.models.get_model_info(f"models:/{NAME}/latest").model_uuid == info.model_uuid  # the card's URI
    # Logged as code (no pickle), carrying the bitnas package that exported it.
    assert info.flavors["python_function"]["loader_module"] == "mlflow.pyfunc.loaders.code_model"
    top = {f.path for f in client.list_logged_model_artifacts(model_id)}
    assert "MLmodel" in top and "python_model.pkl" not in top
    assert "code/bitnas/export" in {f.path for f in client.list_logged_model_artifacts(model_id, "code/bitnas")}
    (spec,) = info.signature.inputs.inputs
    assert spec.type == np.dtype(np.float32) and spec.shape == (-1, 1, 8, 8)
    assert info.signature.outputs.input_names()[:3] == ["class", "class_index", "prob_0"]
    # The input example: real preprocessed test images, as the serving JSON a client would send.
    example = mlflow.artifacts.download_artifacts(f"{logged.artifact_location}/serving_input_example.json",
                                                  dst_path=str(tmp_path))
    inputs = np.asarray(json.loads(Path(example).read_text())["inputs"], dtype=np.float32)
    np.testing.assert_array_equal(inputs, test_images[:4])


def test_loaded_model_classifies_as_the_packed_model(registered, finished_study, test_images, packed_logits):
    with store(finished_study):
        model = mlflow.pyfunc.load_model(f"models:/{NAME}/1")
    frame = model.predict(test_images)
    assert list(frame["class_index"]) == list(packed_logits.argmax(axis=1))
    assert list(frame["class"]) == [str(i) for i in packed_logits.argmax(axis=1)]  # digits: names are "0".."9"
    softmax = np.exp(packed_logits - packed_logits.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(frame[[f"prob_{c}" for c in range(10)]].to_numpy(), softmax, rtol=1e-9, atol=1e-12)
    # The signature refuses images of another size before the engine sees them.
    with pytest.raises(mlflow.exceptions.MlflowException, match=r"does not match expected shape \(-1, 1, 8, 8\)"):
        model.predict(test_images[:, :, :4, :4])


def test_onnx_flavour_logged_on_the_same_run(registered, finished_study, test_images):
    import onnxruntime

    client = MlflowClient(tracking_uri(finished_study))
    note = json.loads((registered / "registered.json").read_text())
    (version,) = client.search_model_versions(f"name = '{NAME}'")
    assert version.tags["bitnas.onnx_model"] == note["onnx_model_uri"]
    logged = client.get_logged_model(note["onnx_model_uri"].removeprefix("models:/"))
    assert logged.source_run_id == version.run_id
    assert logged.experiment_id == client.get_run(version.run_id).info.experiment_id
    with store(finished_study):
        info = mlflow.models.get_model_info(note["onnx_model_uri"])
        onnx_model = mlflow.pyfunc.load_model(note["onnx_model_uri"])
    assert "onnx" in info.flavors
    session = onnxruntime.InferenceSession(str(registered / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = session.run(["logits"], {"image": test_images})[0]
    np.testing.assert_allclose(onnx_model.predict({"image": test_images})["logits"], expected, rtol=1e-5, atol=1e-6)


def test_mlflow_models_serve_answers_the_same_classes(registered, finished_study, test_images, packed_logits, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri(finished_study)}
    with log_path.open("w") as log:
        server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{NAME}/1",
                                   "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
                                  stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True)
    try:
        wait_until_healthy(url, server, log_path, "mlflow models serve")
        request = urllib.request.Request(f"{url}/invocations", data=json.dumps({"inputs": test_images.tolist()}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            predictions = json.loads(answer.read())["predictions"]
        assert [row["class_index"] for row in predictions] == list(packed_logits.argmax(axis=1))
        assert [row["class"] for row in predictions] == [str(i) for i in packed_logits.argmax(axis=1)]
    finally:
        stop_session(server)  # `serve` runs uvicorn in a child process: the whole session goes


def test_a_name_mlflow_refuses_is_one_line_before_anything_is_exported(finished_study, bitnas_main):
    done = bitnas_main("export", "--study", STUDY, "--results", finished_study, "--trial", "0", "--register", "bad/name")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "bitnas: error: --register bad/name: MLflow refused: Invalid model name 'bad/name'. Names cannot contain '/' or ':'."]
    assert done.stdout == ""  # no trial exported
