"""Export trials of a study as files that run: genotype.json, weights.safetensors, model.onnx
(checked in onnxruntime against torch) and a README.md model card.

Inputs come from the study storage (genotype, metrics) and MLflow (trained weights); each trial's
folder is written aside and renamed into place, so a failure never leaves a half-written export.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one line per export, no bars
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import torch
from optuna.trial import TrialState
from safetensors.torch import load_file

from bitnas.errors import UserError
from bitnas.evaluators import Dataset, accuracy, load_dataset
from bitnas.search.objectives import objectives_for
from bitnas.search.report import trials_frame
from bitnas.search.storage import load_existing_study
from bitnas.search.tracking import DB_NAME, find_trial_run_id, tracking_uri
from bitnas.spaces import Genotype, build_model

from .model_card import write_model_card

ONNX_CHECK_IMAGES = 64
ONNX_ATOL = 1e-4


class ExportError(UserError):
    """A trial that cannot be exported; the message says which and why."""


@dataclass(frozen=True)
class OnnxCheck:
    images: int
    max_abs_diff: float
    same_class: int


def _select_trials(study: optuna.Study, trial_number: int | None) -> list[optuna.trial.FrozenTrial]:
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if trial_number is not None:
        if trial_number not in trials:
            raise ExportError(f"study {study.study_name!r} has no trial {trial_number} (it has trials 0-{len(trials) - 1})")
        trial = trials[trial_number]
        if trial.state != TrialState.COMPLETE:
            raise ExportError(f"trial {trial_number} of study {study.study_name!r} is {trial.state.name}, not COMPLETE")
        return [trial]
    frame = trials_frame(study, objectives_for(study.user_attrs["objectives"]))
    if frame.empty:
        raise ExportError(f"study {study.study_name!r} has no completed trials to export")
    return [trials[int(n)] for n in frame.loc[frame["pareto"], "trial"]]


def _download_weights(results: Path, study: str, trial_number: int, into: Path) -> Path:
    from mlflow.tracking import MlflowClient

    if not (results / DB_NAME).is_file():
        raise ExportError(f"no MLflow store at {results / DB_NAME}: the trained weights are kept there")
    client = MlflowClient(tracking_uri(results))
    experiment = client.get_experiment_by_name(study)
    run_id = find_trial_run_id(client, experiment.experiment_id, trial_number) if experiment else None
    if run_id is None:
        raise ExportError(f"no MLflow run for trial {trial_number} of study {study!r} in {results / DB_NAME}")
    return Path(client.download_artifacts(run_id, "weights.safetensors", str(into)))


def _export_onnx(model: torch.nn.Module, data: Dataset, path: Path) -> OnnxCheck:
    import onnxruntime

    sample = data.test.images[:1]
    torch.onnx.export(model, (sample,), str(path), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    images = data.test.images[:ONNX_CHECK_IMAGES]
    with torch.inference_mode():
        expected = model(images).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"image": images.numpy()})[0]
    check = OnnxCheck(images=len(images), max_abs_diff=float(np.abs(got - expected).max()),
                      same_class=int((got.argmax(1) == expected.argmax(1)).sum()))
    if check.same_class != check.images or not np.allclose(got, expected, atol=ONNX_ATOL, rtol=1e-3):
        raise ExportError(f"{path.name}: onnxruntime disagrees with torch (max |diff| {check.max_abs_diff:.3g}, "
                          f"{check.same_class}/{check.images} same class)")
    return check


def export_trial(results: Path, study: optuna.Study, trial: optuna.trial.FrozenTrial, data: Dataset) -> Path:
    # A duplicate reused an identical network's result: its weights are that trial's.
    trained_by = int(trial.user_attrs.get("duplicate_of", trial.number))
    genotype = Genotype.from_dict(trial.user_attrs["genotype"])
    target = results / "export" / study.study_name / f"trial-{trial.number}"
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".trial-{trial.number}-", dir=target.parent))
    try:
        weights = _download_weights(results, study.study_name, trained_by, staging)
        model = build_model(genotype)
        model.load_state_dict(load_file(str(weights)))
        model.eval()
        (staging / "genotype.json").write_text(genotype.to_json(indent=2) + "\n")
        check = _export_onnx(model, data, staging / "model.onnx")
        test_accuracy = accuracy(model, data.test)
        metrics = dict(trial.user_attrs.get("metrics", {}), test_accuracy=test_accuracy)
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        write_model_card(staging / "README.md", study=study, trial=trial, genotype=genotype, metrics=metrics,
                         dataset=data, onnx_check=check)
        staging.chmod(0o755)  # mkdtemp made it private; the export is meant to be shared
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def export_study(results: Path, study_name: str, *, trial_number: int | None = None,
                 storage: str | None = None) -> list[Path]:
    """Export the Pareto-optimal trials of a study (or the one asked for); returns the folders."""
    study = load_existing_study(results, study_name, storage)
    chosen = _select_trials(study, trial_number)
    data = load_dataset(study.user_attrs["dataset"], study.user_attrs.get("data_seed", 0))
    return [export_trial(results, study, trial, data) for trial in chosen]
