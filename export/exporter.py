"""Export trials of a study as files that run: genotype.json, weights.safetensors, model.onnx
(checked in onnxruntime against torch), model.bitnas.npz (the packed binary engine model, loads
without pickle, checked against torch), costs.csv, latency.json, pareto.png with this network
marked, and a README.md model card; optionally retrained for longer, and registered in MLflow.

Inputs come from the study storage (genotype, metrics) and MLflow (trained weights); each trial's
folder is written aside and renamed into place, so a failure never leaves a half-written export.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one line per export, no bars
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from bitnas.errors import UserError
from bitnas.evaluators import Dataset, accuracy, load_dataset
from bitnas.search.objectives import objectives_for
from bitnas.search.report import trials_frame
from bitnas.search.storage import load_existing_study
from bitnas.search.tracking import DB_NAME, find_trial_run_id, tracking_uri
from bitnas.spaces import Genotype, build_model

from .model_card import write_model_card
from .packed_model import PACKED_FILE
from .preprocess import dataset_options, preprocessing
from .selection import Selection, select_trials

ONNX_CHECK_IMAGES = 64
ONNX_ATOL = 1e-4
PACKED_ATOL = 1e-3


class ExportError(UserError):
    """A trial that cannot be exported; the message says which and why."""


@dataclass(frozen=True)
class OnnxCheck:
    images: int
    max_abs_diff: float
    same_class: int


@dataclass(frozen=True)
class ExportOptions:
    selection: Selection = field(default_factory=Selection)
    epochs: float | None = None           # retrain the chosen network from scratch for this long
    distill: bool = False                 # ... learning from the full-precision teacher
    register: str | None = None           # register in the MLflow model registry under this name
    tracking_uri: str | None = None       # the study's MLflow store, when not <results>/mlflow.db


class _Tracking:
    """The study's MLflow store: where the trained weights are, and where exports are registered."""

    def __init__(self, results: Path, study: optuna.Study, configured: str | None):
        from mlflow.tracking import MlflowClient

        configured = configured or (study.user_attrs.get("config") or {}).get("tracking_uri")
        if not configured and not (results / DB_NAME).is_file():
            raise ExportError(f"no MLflow store at {results / DB_NAME}: the trained weights are kept there")
        self.client = MlflowClient(tracking_uri(results, configured))
        self.study = study.study_name
        experiment = self.client.get_experiment_by_name(self.study)
        self.experiment_id = experiment.experiment_id if experiment else None

    def run_id(self, trial_number: int) -> str:
        run_id = find_trial_run_id(self.client, self.experiment_id, trial_number) if self.experiment_id else None
        if run_id is None:
            raise ExportError(f"no MLflow run for trial {trial_number} of study {self.study!r}")
        return run_id

    def weights(self, trial_number: int, into: Path) -> Path:
        return Path(self.client.download_artifacts(self.run_id(trial_number), "weights.safetensors", str(into)))


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


def _export_packed(model: torch.nn.Module, genotype: Genotype, data: Dataset, path: Path, prep: dict,
                   trial_number: int) -> dict:
    """Compile, save, load back from the file, and check the loaded model against torch."""
    from bitnas.evaluators.engine import ENGINE_NAME, compile_model
    from bitnas.evaluators.engine.packed_file import load_packed, save_packed

    engine = compile_model(model, data.input_shape)
    save_packed(engine, genotype, path, preprocessing=prep, extra={"trial": trial_number, "engine": ENGINE_NAME})
    loaded, _ = load_packed(path)
    images = data.test.images[:ONNX_CHECK_IMAGES]
    with torch.inference_mode():
        expected = model(images).numpy()
    got = loaded(images.numpy())
    check = {"images": len(images), "max_abs_diff": float(np.abs(got - expected).max()),
             "same_class": int((got.argmax(1) == expected.argmax(1)).sum()), "packed_share": loaded.packed_share,
             "fallbacks": [list(f) for f in loaded.fallbacks], "bytes": path.stat().st_size}
    if check["max_abs_diff"] > PACKED_ATOL * max(1.0, float(np.abs(expected).max())):
        raise ExportError(f"{path.name}: the packed engine disagrees with torch (max |diff| {check['max_abs_diff']:.3g})")
    return check


def _retrain(genotype: Genotype, data: Dataset, study: optuna.Study, options: ExportOptions, results: Path,
             seed: int) -> tuple[torch.nn.Module, dict]:
    from dataclasses import fields

    from bitnas.evaluators import TrainingConfig
    from bitnas.evaluators.train import train

    study_training = (study.user_attrs.get("config") or {}).get("training", {})
    known = {f.name for f in fields(TrainingConfig)}
    config = TrainingConfig(**{**{k: v for k, v in study_training.items() if k in known}, "epochs": options.epochs})
    teacher, teacher_note = None, ""
    if options.distill:
        try:
            from bitnas.evaluators.distill import load_or_train_teacher
        except ImportError:
            raise ExportError("--distill needs bitnas.evaluators.distill, which this installation lacks") from None
        found = load_or_train_teacher(results, data.name, study.user_attrs.get("data_seed", 0))
        teacher = found.model()
        teacher_note = f"distilled from a full-precision teacher (test accuracy {found.test_accuracy:.4f})"
    torch.manual_seed(seed)
    model = build_model(genotype)
    outcome = train(model, data.train, data.val, config, seed=seed, **({"teacher": teacher} if teacher else {}))
    return model, {"epochs": options.epochs, "val_accuracy": outcome.epoch_val_accuracy[-1],
                   "seconds": outcome.seconds, "distilled": teacher_note}


def export_trial(results: Path, study: optuna.Study, trial: optuna.trial.FrozenTrial, data: Dataset, *,
                 tracking: _Tracking, prep: dict, frame: pd.DataFrame, options: ExportOptions = ExportOptions()) -> Path:
    # A duplicate reused an identical network's result: its weights are that trial's.
    trained_by = int(trial.user_attrs.get("duplicate_of", trial.number))
    genotype = Genotype.from_dict(trial.user_attrs["genotype"])
    target = results / "export" / study.study_name / f"trial-{trial.number}"
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".trial-{trial.number}-", dir=target.parent))
    try:
        retrained = None
        if options.epochs:
            model, retrained = _retrain(genotype, data, study, options, results, seed=trial.number)
            save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
                      str(staging / "weights.safetensors"))
        else:
            weights = tracking.weights(trained_by, staging)
            model = build_model(genotype)
            model.load_state_dict(load_file(str(weights)))
        model.eval()
        (staging / "genotype.json").write_text(genotype.to_json(indent=2) + "\n")
        check = _export_onnx(model, data, staging / "model.onnx")
        packed = _export_packed(model, genotype, data, staging / PACKED_FILE, prep, trial.number)
        test_accuracy = accuracy(model, data.test)
        metrics = dict(trial.user_attrs.get("metrics", {}), test_accuracy=test_accuracy)
        if retrained:
            metrics.update(retrained_val_accuracy=retrained["val_accuracy"], retrained_epochs=retrained["epochs"])
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        (staging / "latency.json").write_text(json.dumps(trial.user_attrs.get("latency", {}), indent=2) + "\n")
        _pareto_plot(study, frame, trial.number, staging / "pareto.png")
        write_model_card(staging / "README.md", study=study, trial=trial, genotype=genotype, metrics=metrics,
                         dataset=data, onnx_check=check, packed_check=packed, retrained=retrained,
                         selection=options.selection.describe())
        staging.chmod(0o755)  # mkdtemp made it private; the export is meant to be shared
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _pareto_plot(study: optuna.Study, frame: pd.DataFrame, number: int, path: Path) -> None:
    from bitnas.search.plots import write_pareto_png
    from bitnas.search.references import reference_frame

    objectives = objectives_for(study.user_attrs["objectives"])
    references = reference_frame(study, objectives, frame)
    write_pareto_png(frame, objectives, path, f"study {study.study_name}: trial {number} among {len(frame)} trials",
                     references, highlight=number)


def export_study(results: Path, study_name: str, *, trial_number: int | None = None, storage: str | None = None,
                 options: ExportOptions | None = None) -> list[Path]:
    """Export the trials the selection picks (default: the Pareto front); returns the folders."""
    options = options or ExportOptions(selection=Selection(trial=trial_number))
    study = load_existing_study(results, study_name, storage)
    chosen = select_trials(study, options.selection)
    tracking = _Tracking(results, study, options.tracking_uri)
    seed = study.user_attrs.get("data_seed", 0)
    data_options = dataset_options(study.user_attrs.get("config") or {})
    data = load_dataset(study.user_attrs["dataset"], seed, data_options)
    prep = preprocessing(study.user_attrs["dataset"], seed, data_options)
    frame = trials_frame(study, objectives_for(study.user_attrs["objectives"]))
    written = []
    for trial in chosen:
        folder = export_trial(results, study, trial, data, tracking=tracking, prep=prep, frame=frame, options=options)
        if options.register:
            from .registry import register_export

            version = register_export(tracking.client, tracking.run_id(trial.number), folder, options.register,
                                      tags={"bitnas.study": study_name, "bitnas.trial_number": str(trial.number)})
            (folder / "registered.json").write_text(json.dumps({"name": options.register, "version": version,
                                                                 "tracking_uri": tracking.client.tracking_uri}) + "\n")
        written.append(folder)
    return written
