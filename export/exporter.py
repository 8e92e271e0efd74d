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
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from bitnas.errors import RunFailed, UserError
from bitnas.evaluators import Dataset, accuracy, load_dataset
from bitnas.evaluators.train import is_quantized
from bitnas.search.studies import StudyArchive
from bitnas.search.tracking import TrialArtifacts
from bitnas.spaces import Genotype, build_model
from bitnas.spaces.budget import check_budget
from bitnas.spaces.pruning import DEFAULT_CRITERION

from .agreement import Agreement, compare_logits
from .model_card import write_model_card
from .packed_model import PACKED_FILE
from .preprocess import preprocessing
from .selection import Selection, select_trials

CHECK_IMAGES = 64  # test images every exported format is compared with torch on
EXAMPLE_IMAGES = 4  # test images a registered model carries as its MLflow input example


class ExportError(UserError):
    """A trial that cannot be exported; the message says which and why."""


class ExportIncomplete(RunFailed):
    """Some trials of a selection could not be exported; the others were, whole."""

    def __init__(self, written: list[Path], failures: list[str]):
        super().__init__(f"{len(failures)} of {len(written) + len(failures)} trial(s) not exported: "
                         + "; ".join(failures))
        self.written, self.failures = written, failures


@dataclass(frozen=True)
class ExportOptions:
    selection: Selection = field(default_factory=Selection)
    epochs: float | None = None           # retrain the chosen network from scratch for this long
    distill: bool = False                 # ... learning from the full-precision teacher
    register: str | None = None           # register in the MLflow model registry under this name
    tracking_uri: str | None = None       # the study's MLflow store, when not <results>/mlflow.db
    prune: float | None = None            # remove this share of every stage's channels, then fine-tune
    prune_epochs: float | None = None     # ... for this long (default: a third of `epochs`, else 2)
    prune_criterion: str = DEFAULT_CRITERION  # channel importance: "l1" (latent kernel rows) or "bn" (|gamma|)

    @property
    def fine_tune_epochs(self) -> float:
        if self.prune_epochs is not None:
            return self.prune_epochs
        return self.epochs / 3 if self.epochs else 2.0


@dataclass(frozen=True)
class _TorchLogits:
    """What every exported format is compared with: torch's logits on the check images, computed
    once per trial."""

    images: np.ndarray
    logits: np.ndarray
    quantized: bool

    @classmethod
    def of(cls, model: torch.nn.Module, data: Dataset) -> _TorchLogits:
        images = data.test.images[:CHECK_IMAGES]
        with torch.inference_mode():
            logits = model(images).numpy()
        return cls(images.numpy(), logits, is_quantized(model))

    def check(self, got: np.ndarray, path: Path, what: str) -> Agreement:
        agreement = compare_logits(self.logits, got, quantized=self.quantized)
        if not agreement.agrees:
            raise ExportError(f"{path.name}: {what} disagrees with torch ({agreement.describe()})")
        return agreement


def _export_onnx(model: torch.nn.Module, data: Dataset, path: Path, torch_logits: _TorchLogits) -> Agreement:
    import onnxruntime

    with warnings.catch_warnings():
        # The tracer warns that LSQ's step-size gradient scale becomes a constant: true, and harmless
        # for inference (it only scales a gradient).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(model, (data.test.images[:1],), str(path), input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch_logits.check(session.run(["logits"], {"image": torch_logits.images})[0], path, "onnxruntime")


def _export_packed(model: torch.nn.Module, genotype: Genotype, data: Dataset, path: Path, prep: dict,
                   trial_number: int, torch_logits: _TorchLogits) -> dict:
    """Compile, save, load back from the file, and check the loaded model against torch."""
    from bitnas.evaluators.engine import ENGINE_NAME, compile_model
    from bitnas.evaluators.engine.packed_file import load_packed, save_packed

    engine = compile_model(model, data.input_shape)
    save_packed(engine, genotype, path, preprocessing=prep, extra={"trial": trial_number, "engine": ENGINE_NAME})
    loaded, _ = load_packed(path)
    agreement = torch_logits.check(loaded(torch_logits.images), path, "the packed engine")
    return {"agreement": agreement, "packed_share": loaded.packed_share,
            "fallbacks": [list(f) for f in loaded.fallbacks], "bytes": path.stat().st_size}


def _epoch_progress(what: str, epochs: float):
    """A `train(should_stop=...)` callback that only reports: one line per finished epoch on
    stderr, so a retraining of many minutes shows where it is (it never stops training)."""
    started = time.perf_counter()

    def report(done: int, curve: list[float]) -> bool:
        print(f"  {what}: epoch {done}/{epochs:g}, val accuracy {curve[-1]:.4f} "
              f"({time.perf_counter() - started:.0f}s)", file=sys.stderr, flush=True)
        return False

    return report


LATENCY_ROUNDS = 5  # pruning: the unpruned and the pruned network timed in turn this often


def _latency_side_by_side(before_model: torch.nn.Module, after_model: torch.nn.Module, data: Dataset, request,
                          before: dict, after: dict) -> None:
    """Both latencies from alternating rounds after the fine-tuning, each the round whose median is
    the middle one (the fine-tuning lies minutes between the two networks' other figures)."""
    from bitnas.evaluators.latency import measure_side_by_side

    rounds = measure_side_by_side(before_model.eval(), after_model.eval(), data.input_shape, request.latency,
                                  LATENCY_ROUNDS)
    for figures, measured in ((before, [b for b, _ in rounds]), (after, [a for _, a in rounds])):
        middle = sorted(measured, key=lambda m: m.median_ms)[len(measured) // 2]
        figures.update(latency_ms=middle.median_ms, latency_p90_ms=middle.p90_ms,
                       latency={**middle.as_dict(), "rounds": LATENCY_ROUNDS,
                                "measured": "median of alternating rounds, beside the other network"})


def _retrain(study: StudyArchive, genotype: Genotype, data: Dataset, options: ExportOptions,
             trial_number: int) -> tuple[torch.nn.Module, dict]:
    """Train the network from scratch as its study trained it (the same request: recipe, data
    options, threads, teacher), for `options.epochs`."""
    from bitnas.evaluators.train import train

    from bitnas.evaluators.recipes import retraining_config

    request = study.request(trial_number, epochs=options.epochs, distill=options.distill)
    teacher = request.teacher.model() if request.teacher is not None else None
    torch.set_num_threads(request.train_threads)
    torch.manual_seed(request.seed)
    model = build_model(genotype)
    training, recipe = retraining_config(request.training, model)
    outcome = train(model, data.train, data.val, training, seed=request.seed, teacher=teacher,
                    should_stop=_epoch_progress(f"trial {trial_number} retraining", training.epochs))
    note = (f"distilled from a full-precision teacher (test accuracy {request.teacher.test_accuracy:.4f}, "
            f"{request.training.teacher_epochs:g} epochs)" if request.teacher is not None else "")
    return model, {"epochs": options.epochs, "val_accuracy": outcome.val_accuracy,
                   "seconds": outcome.seconds, "distilled": note, "recipe": recipe + _kept(outcome)}


def _kept(outcome) -> str:
    """What the model card adds when the weights are not the last epoch's (`keep_best`)."""
    if outcome.kept_epoch is None:
        return ""
    return (f"; the weights of epoch {outcome.kept_epoch} of {len(outcome.epoch_val_accuracy)}, the best on the "
            "validation split")


def _measure(model: torch.nn.Module, data: Dataset, request) -> dict:
    """What the model card compares before and after pruning, measured now, on this machine, with
    the study's energy profile; the latencies come after the fine-tuning, side by side
    (`_latency_side_by_side`)."""
    from bitnas.evaluators.energy import estimate_energy
    from bitnas.evaluators.evaluate import _measured_energy
    from bitnas.spaces import count_costs

    model.eval()
    costs = count_costs(model, data.input_shape)
    totals = costs.totals()
    # The meter's inputs are random: forking keeps the fine-tuning's randomness as seeded.
    with torch.random.fork_rng():
        measured = _measured_energy(model, data.input_shape, request) if request.energy_meter == "auto" else None
    energy = estimate_energy(costs, request.energy_profile)
    return {"test_accuracy": accuracy(model, data.test), "size_kb": float(totals["size_kb"]),
            "params": int(costs.params), "ops": float(totals["ops"]), "energy_analytic_uj": energy.total_uj,
            "energy_measured_uj": measured.per_inference_uj if measured is not None else None,
            "energy_source": measured.source if measured is not None else energy.source}


def _prune(study: StudyArchive, genotype: Genotype, model: torch.nn.Module, data: Dataset, options: ExportOptions,
           trial_number: int) -> tuple[torch.nn.Module, Genotype, dict]:
    """Prune the trained network, fine-tune it as the study trains (recipe, threads, teacher),
    and measure it before and after."""
    from bitnas.evaluators.train import recalibrate_batchnorm, train
    from bitnas.spaces.pruning import prune

    epochs = options.fine_tune_epochs
    request = study.request(trial_number, epochs=epochs, distill=options.distill)
    torch.set_num_threads(request.train_threads)
    before = _measure(model, data, request)
    result = prune(model, genotype, options.prune, criterion=options.prune_criterion)
    # Removing a binary conv's inputs shifts every popcount, so the old BatchNorm statistics no longer
    # fit: the figure before fine-tuning is taken with them recomputed, as training does each epoch.
    recalibrated = build_model(result.genotype)
    recalibrated.load_state_dict(result.model.state_dict())
    count = request.training.bn_recalibration or 512
    recalibrate_batchnorm(recalibrated, data.train.images[torch.randperm(
        len(data.train), generator=torch.Generator().manual_seed(request.seed))[:count]])
    pruned_accuracy = accuracy(recalibrated, data.test)
    from bitnas.evaluators.recipes import retraining_config

    teacher = request.teacher.model() if request.teacher is not None else None
    torch.manual_seed(request.seed)
    training, recipe = retraining_config(request.training, result.model)
    outcome = train(result.model, data.train, data.val, training, seed=request.seed, teacher=teacher,
                    should_stop=_epoch_progress(f"trial {trial_number} pruned, fine-tuning", training.epochs))
    after = _measure(result.model, data, request)
    _latency_side_by_side(model, result.model, data, request, before, after)
    return result.model, result.genotype, {
        "ratio": options.prune, "criterion": options.prune_criterion, "fine_tune_epochs": epochs,
        "recipe": recipe + _kept(outcome),
        "distilled": request.teacher is not None, "genotype_before": genotype.short(),
        "genotype_after": result.genotype.short(), "test_accuracy_before_fine_tuning": pruned_accuracy,
        "fine_tune_val_accuracy": outcome.val_accuracy,
        "fine_tune_seconds": outcome.seconds, "before": before, "after": after}


def export_trial(study: StudyArchive, trial, data: Dataset, *, artifacts: TrialArtifacts, prep: dict,
                 options: ExportOptions = ExportOptions()) -> Path:
    """Write one trial's folder aside and move it into place whole: a failure leaves no half export."""
    # A duplicate reused an identical network's result: its weights are that trial's.
    trained_by = int(trial.user_attrs.get("duplicate_of", trial.number))
    genotype = Genotype.from_dict(trial.user_attrs["genotype"])
    check_budget(genotype, f"trial {trial.number}: ")
    if options.prune:
        from bitnas.spaces.pruning import check_prunable

        check_prunable(genotype)  # before any retraining: a network that cannot be pruned fails at once
    target = study.results / "export" / study.name / f"trial-{trial.number}"
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".trial-{trial.number}-", dir=target.parent))
    try:
        retrained = None
        if options.epochs:
            # Under `schedule: asha` every rung of a network trains with its rung-0 trial's seed.
            model, retrained = _retrain(study, genotype, data, options, int(trial.user_attrs.get("asha_network", trial.number)))
            save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
                      str(staging / "weights.safetensors"))
        else:
            weights = artifacts.weights(trained_by, staging)
            model = build_model(genotype)
            model.load_state_dict(load_file(str(weights)))
        pruning = None
        if options.prune:
            model, genotype, pruning = _prune(study, genotype, model, data, options, trial.number)
            save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
                      str(staging / "weights.safetensors"))
        model.eval()
        (staging / "genotype.json").write_text(genotype.to_json(indent=2) + "\n")
        torch_logits = _TorchLogits.of(model, data)
        onnx_check = _export_onnx(model, data, staging / "model.onnx", torch_logits)
        packed = _export_packed(model, genotype, data, staging / PACKED_FILE, prep, trial.number, torch_logits)
        metrics = dict(trial.user_attrs.get("metrics", {}), test_accuracy=accuracy(model, data.test))
        if retrained:
            metrics.update(retrained_val_accuracy=retrained["val_accuracy"], retrained_epochs=retrained["epochs"])
        latency = trial.user_attrs.get("latency", {})
        if pruning:
            # The search's figures are the unpruned network's; these are the exported network's own.
            after = pruning["after"]
            latency = after["latency"]
            metrics.update(latency_ms=after["latency_ms"], latency_p90_ms=after["latency_p90_ms"],
                           size_kb=after["size_kb"], params=float(after["params"]), ops=after["ops"],
                           energy_analytic_uj=after["energy_analytic_uj"],
                           energy_uj=after["energy_measured_uj"] or after["energy_analytic_uj"],
                           pruning={k: v for k, v in pruning.items() if k not in ("before", "after")}
                           | {"before": {k: v for k, v in pruning["before"].items() if k != "latency"},
                              "after": {k: v for k, v in after.items() if k != "latency"}})
        checks = {"onnx": onnx_check.as_dict(), "packed": packed["agreement"].as_dict()}
        (staging / "metrics.json").write_text(json.dumps({**metrics, "format_checks": checks}, indent=2,
                                                         sort_keys=True) + "\n")
        (staging / "latency.json").write_text(json.dumps(latency, indent=2) + "\n")
        study.write_pareto_png(staging / "pareto.png", highlight=trial.number)
        write_model_card(staging / "README.md", study_name=study.name, trial=trial, genotype=genotype,
                         metrics=metrics, dataset=data, onnx_check=onnx_check, packed_check=packed,
                         retrained=retrained, selection=options.selection.describe(),
                         registered_name=options.register, pruning=pruning)
        staging.chmod(0o755)  # mkdtemp made it private; the export is meant to be shared
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _register(artifacts: TrialArtifacts, study: StudyArchive, trial_number: int, folder: Path, name: str,
              data: Dataset) -> None:
    from .registry import register_export

    registered = register_export(artifacts.client, artifacts.run_id(trial_number), folder, name,
                                 tags={"bitnas.study": study.name, "bitnas.trial_number": str(trial_number)},
                                 examples=data.test.images[:EXAMPLE_IMAGES].numpy())
    (folder / "registered.json").write_text(json.dumps({
        "name": name, "version": registered.version, "model_uri": f"models:/{name}/{registered.version}",
        "logged_model_uri": registered.model_uri, "onnx_model_uri": registered.onnx_model_uri,
        "tracking_uri": artifacts.uri}) + "\n")


def export_study(results: Path, study_name: str, *, trial_number: int | None = None, storage: str | None = None,
                 options: ExportOptions | None = None, out=None) -> list[Path]:
    """Export the trials the selection picks (default: the Pareto front); returns the folders.

    Every chosen trial is tried: one that cannot be exported is reported, the others are written
    (each whole), and `ExportIncomplete` at the end names the ones that failed."""
    options = options or ExportOptions(selection=Selection(trial=trial_number))
    study = StudyArchive(results, study_name, storage)
    chosen = select_trials(study, options.selection)
    artifacts = study.artifacts(options.tracking_uri)
    if options.register:
        from .registry import prepare_registered_model

        prepare_registered_model(artifacts.client, options.register)
    data = load_dataset(study.dataset, study.data_seed, study.data_options())
    prep = preprocessing(study.dataset, study.data_seed, study.data_options())
    written, failures = [], []
    for trial in chosen:
        try:
            folder = export_trial(study, trial, data, artifacts=artifacts, prep=prep, options=options)
            if options.register:
                _register(artifacts, study, trial.number, folder, options.register, data)
        except UserError as error:
            failures.append(f"trial {trial.number}: {error}")
            continue
        except Exception as error:  # noqa: BLE001 - one trial's failure (a runtime's bug) never stops the rest
            failures.append(f"trial {trial.number}: {type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:300]}")
            continue
        if out is not None:
            out(folder)
        written.append(folder)
    if failures:
        raise ExportIncomplete(written, failures)
    return written
