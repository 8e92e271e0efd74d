"""`--register NAME`: the exported folder becomes an MLflow Model logged on the trial's own run (so
the version points at the run that trained the network) and a version of the registered model
NAME, with the model card as its description.

Two logged models per export: `model`, a pyfunc model that classifies with the packed binary engine
(`mlflow_model.py`; the one registered, so `mlflow.pyfunc.load_model("models:/NAME/<v>")` and
`mlflow models serve -m models:/NAME/<v>` work), and `onnx`, the ONNX file in MLflow's ONNX flavour
for runtimes that take ONNX. The ONNX model is not registered: a registered model's versions should
all be the same kind of thing, and the packed engine is what bitnas deploys; its URI is kept in the
version's tag `bitnas.onnx_model` and in registered.json."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bitnas.errors import UserError

MAX_DESCRIPTION = 50_000  # MLflow stores descriptions as text; a card is a few KB
# The folders the `bitnas` distribution installs as subpackages of `bitnas` (pyproject.toml's
# package-dir): an editable install leaves them outside bitnas/, so each is found by import.
SUBPACKAGES = ("search", "spaces", "evaluators", "export")


class RegistryError(UserError):
    """A registration that cannot be made; the message says why."""


@dataclass(frozen=True)
class Registered:
    version: str
    model_uri: str       # the logged pyfunc model, models:/m-...
    onnx_model_uri: str  # the logged ONNX model, models:/m-...


def _bundle_code(into: Path) -> Path:
    """A copy of the bitnas package (with its subpackages put back under bitnas/), logged as the
    model's `code_paths`. Why bundle rather than rely on an installed bitnas: the server that
    `mlflow models serve --env-manager local` starts is whatever `uvicorn` is first on PATH, whose
    interpreter may hold another bitnas (on this machine: the base interpreter's editable install
    of a different checkout) or none; MLflow puts the model's code first on sys.path, so the model
    runs with the code that exported and checked it. Its third-party libraries come from the
    environment (`pip_requirements` names them)."""
    import bitnas

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    target = into / "bitnas"
    shutil.copytree(Path(bitnas.__file__).parent, target, ignore=ignore)
    for name in SUBPACKAGES:
        source = Path(importlib.import_module(f"bitnas.{name}").__file__).parent
        shutil.copytree(source, target / name, ignore=ignore, dirs_exist_ok=True)
    return target


def _requirements() -> list[str]:
    """bitnas's own dependencies, pinned to the versions this export was checked with. Given
    explicitly: without them MLflow infers requirements by loading the model in a subprocess."""
    from importlib.metadata import PackageNotFoundError, requires, version

    from packaging.requirements import Requirement

    pinned = []
    for line in requires("bitnas") or []:
        requirement = Requirement(line)
        if requirement.marker is not None:  # extras (dev, gpu): not needed to serve
            continue
        try:
            extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
            pinned.append(f"{requirement.name}{extras}=={version(requirement.name)}")
        except PackageNotFoundError:
            pinned.append(str(requirement))
    return pinned


@contextlib.contextmanager
def _tracking_uri(uri: str):
    """MLflow's model logging reads the global tracking URI; point it at the study's store for
    the duration and put back what was there (set_tracking_uri mirrors it into the environment)."""
    import mlflow

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def _logged_model(client, run_id: str, name: str, tags: dict[str, str]) -> str:
    """A new logged model in the run's own experiment; its id. Made here because `Model.log` would
    put it in the active experiment (the store's Default one, whose artefacts go to ./mlruns)."""
    run = client.get_run(run_id)
    return client.create_logged_model(run.info.experiment_id, name=name, source_run_id=run_id, tags=tags,
                                      params=dict(run.data.params)).model_id


def _log_models(client, run_id: str, folder: Path, examples: np.ndarray, tags: dict[str, str]):
    """Log the pyfunc (packed engine) and ONNX models on the run; (pyfunc info, onnx info)."""
    import mlflow.onnx
    import mlflow.pyfunc
    import onnx
    from mlflow.models import Model, ModelSignature
    from mlflow.types import Schema, TensorSpec

    from bitnas.evaluators.engine.packed_file import read_header

    from .mlflow_model import EXPORT_ARTIFACT, class_names_of, signature
    from .packed_model import PACKED_FILE

    header = read_header(folder / PACKED_FILE)
    input_shape = tuple(header["input_shape"])
    classes = class_names_of(header)
    with tempfile.TemporaryDirectory() as scratch:
        code = _bundle_code(Path(scratch))
        # MLflow runs the input example through the model as it logs it (it only warns on failure;
        # the tests load and serve the registered model).
        pyfunc = Model.log(artifact_path=None, name="model", flavor=mlflow.pyfunc, run_id=run_id,
                           model_id=_logged_model(client, run_id, "model", tags),
                           python_model=str(Path(__file__).with_name("mlflow_model_code.py")),
                           artifacts={EXPORT_ARTIFACT: str(folder)}, code_paths=[str(code)],
                           signature=signature(input_shape, classes), input_example=examples,
                           pip_requirements=_requirements())
    onnx_signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *input_shape), "image")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, len(classes)), "logits")]))
    onnx_info = Model.log(artifact_path=None, name="onnx", flavor=mlflow.onnx, run_id=run_id,
                          model_id=_logged_model(client, run_id, "onnx", tags),
                          onnx_model=onnx.load(str(folder / "model.onnx")), signature=onnx_signature,
                          input_example={"image": examples},
                          # bitnas targets CPUs; the default list names CUDA first and warns where it is absent.
                          onnx_execution_providers=["CPUExecutionProvider"])
    return pyfunc, onnx_info


def prepare_registered_model(client, name: str) -> None:
    """Find or create the registered model `name` before anything is exported, so that a name
    MLflow refuses (or a registry that cannot be reached) ends in one line before any trial is
    exported, retrained or logged."""
    from mlflow.exceptions import MlflowException

    try:
        try:
            client.get_registered_model(name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            client.create_registered_model(name)
    except MlflowException as error:
        raise RegistryError(f"--register {name}: MLflow refused: {error.message.splitlines()[0]}") from None


def register_export(client, run_id: str, folder: Path, name: str, *, tags: dict[str, str],
                    examples: np.ndarray) -> Registered:
    """Log `folder` (an export) as MLflow models on `run_id` and register the pyfunc one under
    `name` (made by `prepare_registered_model`); `examples` (a few preprocessed test images)
    become the input example."""
    from mlflow.exceptions import MlflowException

    card = (folder / "README.md").read_text()[:MAX_DESCRIPTION]
    try:
        # Inside: creating a version resolves its models:/ source through the global URI too.
        with _tracking_uri(client.tracking_uri):
            pyfunc, onnx_info = _log_models(client, run_id, folder, np.ascontiguousarray(examples, dtype=np.float32), tags)
            version = client.create_model_version(name, pyfunc.model_uri, run_id=run_id, description=card,
                                                  tags={**tags, "bitnas.onnx_model": onnx_info.model_uri},
                                                  model_id=pyfunc.model_id)
            # The registered model shows the card of its latest version.
            client.update_registered_model(name, description=card)
    except MlflowException as error:
        raise RegistryError(f"--register {name}: MLflow refused: {error.message.splitlines()[0]}") from None
    return Registered(str(version.version), pyfunc.model_uri, onnx_info.model_uri)
