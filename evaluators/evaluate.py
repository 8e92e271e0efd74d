"""evaluate(genotype, request) -> TrialResult: the body of one trial, wherever Ray runs it.

Pure with respect to the study: it reads a genotype and a request, trains, counts, measures and
returns data. It never touches Optuna storage or MLflow; the driver records what it returns.

Order: build -> count costs -> measure latency and hardware energy (alone in the node's
measurement slot, cached per genotype: evaluators/measurement.py) -> reject a network over a
latency, energy or size budget -> train (each step through the slot's gate) -> validate.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_bytes

from bitnas.spaces import Genotype, build_model, count_costs
from bitnas.spaces.budget import ResourceBudget, check_budget

from .data import DataOptions, load_dataset
from .distill import Teacher
from .early_stopping import EarlyStoppingRule
from .proxies import ProxyPrefilter
from .settings import SupernetConfig
from .energy import estimate_energy
from .latency import LatencyConfig, compile_for_target, eval_mode, keeping_torch_threads, measure_latency
from .supernet import SharedWeights, evaluate_subnet, load_subnet
from .train import TrainingConfig, TrainingOutcome, accuracy, train


@dataclass(frozen=True)
class EvalRequest:
    dataset: str = "mnist5k"
    data_seed: int = 0
    seed: int = 0
    training: TrainingConfig = field(default_factory=TrainingConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    energy_profile: str = "horowitz45nm"
    energy_meter: str = "auto"                             # "auto": RAPL / NVML where readable; "off"
    train_threads: int = 1
    data: DataOptions = field(default_factory=DataOptions)
    teacher: Teacher | None = None                         # distil from this full-precision network
    early_stopping: EarlyStoppingRule | None = None
    peer_curves: tuple[tuple[float, ...], ...] = ()        # per-epoch val accuracy of finished trials
    prefilter: ProxyPrefilter | None = None                # zero-cost proxy: score, and skip training below its threshold
    budget: ResourceBudget = field(default_factory=ResourceBudget)  # the largest network to build
    # Measure the energy the evaluation uses (evaluators/footprint.py); read by the Ray task around
    # `evaluate`, not by training, so it is no part of the fingerprint.
    footprint: bool = False
    # Upper bounds on metrics known before training ("latency_ms", "energy_uj", "size_kb"): a network
    # over one is not trained (the study's constraints keep it off the front either way).
    limits: tuple[tuple[str, float], ...] = ()
    # `evaluation: supernet`: score the network from the study's supernet (evaluators/supernet.py)
    # instead of training it; the weights themselves arrive apart, in the Ray task (one copy per node).
    supernet_config: SupernetConfig | None = None
    supernet: SharedWeights | None = None
    # `schedule: asha`: train to this many epochs of the `training.epochs` run (a rung) and return a
    # checkpoint to go on from; None trains the whole run. No part of the fingerprint: every rung
    # is a point of the same run, and training straight to `training.epochs` gives the top rung's
    # weights, which is what an export rebuilds.
    until_epochs: float | None = None

    def fingerprint(self) -> str:
        """What decides how a network is trained and measured, as a short digest: the data, seeds,
        training, latency and energy settings, threads and the teacher's weights (not the per-trial
        early-stopping peers or proxy threshold). A trial records it, so an export can show that
        it rebuilt the very same request."""
        teacher = hashlib.sha256(self.teacher.weights).hexdigest() if self.teacher is not None else None
        blob = json.dumps({
            "dataset": self.dataset, "data_seed": self.data_seed, "seed": self.seed,
            "training": self.training.model_dump(mode="json"),
            # the worker-side fields only (a config's LatencySection adds where to measure)
            "latency": self.latency.model_dump(mode="json", include=set(LatencyConfig.model_fields)),
            "data": self.data.model_dump(mode="json"), "energy_profile": self.energy_profile,
            "energy_meter": self.energy_meter, "train_threads": self.train_threads, "teacher": teacher,
            **({"supernet": self.supernet_config.model_dump(mode="json"),
                "supernet_digest": self.supernet.digest if self.supernet is not None else None}
               if self.supernet_config is not None else {}),
        }, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class TrialResult:
    genotype_hash: str
    metrics: dict[str, float]
    epoch_val_accuracy: list[float]
    latency: dict
    energy_source: str
    cost_rows: list[dict]
    weights: bytes
    node: str
    pid: int
    seconds: float
    stopped_early: bool = False
    request_fingerprint: str = ""
    footprint: dict | None = None  # Footprint.as_dict() of the evaluation, when the request asked for it
    rejected: list = field(default_factory=list)  # pre-training limits the network broke (not trained)
    checkpoint: bytes | None = None  # training state at the end of a rung below the top (EvalRequest.until_epochs)


PRE_TRAINING_LIMITS = ("latency_ms", "energy_uj", "size_kb")


def evaluate(genotype_json: str, request: EvalRequest, *, measure_here: bool = True,
             premeasured: dict | None = None, resume: bytes | None = None) -> TrialResult:
    """Count, measure latency and energy (here, unless `measure_here` is False: then another node,
    the target device, measured it: `premeasured`, or it is measured there after training), reject
    a network over a pre-training limit, train (from `resume`, a checkpoint of an earlier rung of
    the same run, when given)."""
    from .measurement import MeasurementSlot

    started = time.perf_counter()
    genotype = Genotype.from_json(genotype_json)
    data = load_dataset(request.dataset, request.data_seed, request.data)
    if (genotype.input_size, genotype.in_channels, genotype.num_classes) != (data.input_size, data.in_channels, data.num_classes):
        raise ValueError(f"genotype expects {genotype.input_size}x{genotype.input_size}x{genotype.in_channels} inputs and "
                         f"{genotype.num_classes} classes; dataset {data.name} has {data.input_size}x{data.input_size}x"
                         f"{data.in_channels} and {data.num_classes}")
    check_budget(genotype, budget=request.budget)  # before anything is allocated for the network
    # One thread per trial: `workers` trials run side by side, one per core, without oversubscribing.
    torch.set_num_threads(request.train_threads)
    torch.manual_seed(request.seed)
    one_shot = request.supernet_config is not None
    if one_shot and request.supernet is None:
        raise ValueError("a supernet evaluation reached the worker without the supernet's weights")
    model = load_subnet(genotype, request.supernet) if one_shot else build_model(genotype)
    costs = count_costs(model, data.input_shape)
    energy = estimate_energy(costs, request.energy_profile)
    slot = MeasurementSlot()
    measured = measure_before_training(model, genotype, data.input_shape, request, slot) if measure_here else premeasured
    early_metrics = {"size_kb": float(costs.totals()["size_kb"]), "energy_uj": energy.total_uj,
                     **(_measured_metrics(measured) if measured else {})}
    over = [f"{name} {early_metrics[name]:.4g} > {bound:g}" for name, bound in request.limits
            if name in early_metrics and early_metrics[name] > bound]
    if resume is not None and request.until_epochs is None:
        raise ValueError("a training checkpoint to resume from came with a request that names no rung (until_epochs)")
    # A scheduled trial (ASHA) is stopped by its scheduler between rungs, never early inside one.
    stop = (request.early_stopping.callback(request.peer_curves)
            if request.early_stopping and request.until_epochs is None else None)
    teacher = request.teacher.model() if request.teacher is not None else None
    proxy_metrics, skipped = {}, bool(over)
    if request.prefilter is not None and not over:
        score = request.prefilter.score(model, data.train, request.seed)
        proxy_metrics = {f"proxy_{request.prefilter.proxy}": score}
        skipped = request.prefilter.rejects(score)
    if one_shot and not skipped:
        begun = time.perf_counter()
        with slot.training_step():
            score = evaluate_subnet(model, data.train, data.val, request.supernet_config, request.seed,
                                    request.training)
        outcome = TrainingOutcome(request.supernet_config.finetune_steps, time.perf_counter() - begun,
                                  float("nan"), (score,), "supernet")
    elif skipped:  # over a budget, or ranked among the hopeless by the proxy: its accuracy is the untrained one
        outcome = TrainingOutcome(0, 0.0, float("nan"), (), "none", stopped_early=True)
    else:
        outcome = train(model, data.train, data.val, request.training, seed=request.seed, teacher=teacher,
                        should_stop=stop, step_guard=slot.training_step if measure_here else None,
                        until_epochs=request.until_epochs, resume=resume)
    metrics = {
        "val_accuracy": outcome.epoch_val_accuracy[-1] if outcome.epoch_val_accuracy else accuracy(model, data.val),
        # Where the hardware has a meter the objective is measured; the analytic split is kept too.
        "energy_uj": energy.total_uj,
        **(_measured_metrics(measured) if measured else {}),
        "energy_analytic_uj": energy.total_uj,
        "energy_compute_uj": energy.compute_uj,
        "energy_memory_uj": energy.memory_uj,
        **{key: float(value) for key, value in costs.totals().items()},
        "train_seconds": outcome.seconds,
        "train_steps": float(outcome.steps),
        "final_loss": outcome.final_loss,
        "epochs_trained": float(len(outcome.epoch_val_accuracy)),
        "stopped_early": float(outcome.stopped_early),
        "slot_wait_s": slot.waited_s,  # training steps paused for other measurements on the node
        **({"measurement_wait_s": float(measured.get("slot_wait_s", 0.0)),
            "latency_cached": float(bool(measured.get("cached")))} if measured else {}),
        **proxy_metrics,
        **({"skipped_by_proxy": 1.0} if skipped and not over else {}),
        **({"rejected_before_training": 1.0} if over else {}),
        **({"supernet_score": 1.0} if one_shot else {}),
        # An ASHA rung: how far it trained (train_steps) and from which step of the run it went on.
        **({"rung_epochs": float(request.until_epochs), "resumed_from_step": float(outcome.resumed_from)}
           if request.until_epochs is not None else {}),
    }
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    energy_source = measured["energy"]["source"] if measured and measured.get("energy") else energy.source
    return TrialResult(
        genotype_hash=genotype.hash(), metrics=metrics, epoch_val_accuracy=list(outcome.epoch_val_accuracy),
        latency=measured["latency"] if measured else {}, energy_source=energy_source,
        cost_rows=[{**row, "energy_pj": pj} for row, pj in zip(costs.rows(), energy.by_layer_pj)],
        weights=safetensors_bytes(state), node=platform.node(), pid=os.getpid(), seconds=time.perf_counter() - started,
        stopped_early=outcome.stopped_early, request_fingerprint=request.fingerprint(),
        rejected=over, checkpoint=outcome.checkpoint,
    )


def _measured_metrics(measured: dict) -> dict[str, float]:
    latency = measured["latency"]
    metrics = {"latency_ms": latency["median_ms"], "latency_p90_ms": latency["p90_ms"]}
    if measured.get("energy"):
        metrics["energy_uj"] = measured["energy"]["per_inference_uj"]
    return metrics


def measure_before_training(model, genotype: Genotype, input_shape: tuple[int, int, int], request: EvalRequest,
                            slot=None, cache=None) -> dict:
    """Latency (and hardware energy where a meter is readable) of the freshly built network, alone
    in the node's measurement slot, or from the node's cache when this genotype was measured here
    before under the same settings: {"latency": ..., "energy": ... or None, "cached": bool,
    "slot_wait_s": seconds waited for the slot}."""
    from .measurement import MeasurementCache, MeasurementKey, MeasurementSlot

    slot = slot if slot is not None else MeasurementSlot()
    cache = cache if cache is not None else MeasurementCache()
    key = MeasurementKey(genotype.hash(), request.latency.target, request.latency.threads, request.latency.runs,
                         request.latency.warmup, request.energy_meter, request.latency.mode)
    known = cache.get(key)
    if known is not None:
        return {**known, "cached": True, "slot_wait_s": 0.0}
    if request.latency.mode == "measure":  # compiling needs no exclusive slot; timing does
        compile_for_target(model, input_shape, request.latency)
    # Measurement draws random inputs; forking keeps the trial's training randomness as it was.
    with torch.random.fork_rng(), keeping_torch_threads(), slot.measuring() as waited:
        if request.latency.mode == "predict":
            latency = predicted_latency(model, input_shape, request.latency, cache.directory.parent)
        else:
            latency = {**measure_latency(model, input_shape, request.latency).as_dict(), "source": "measured",
                       "measured": "before training, alone in the node's slot"}
        energy = _measured_energy(model, input_shape, request) if request.energy_meter == "auto" else None
    value = {"latency": latency, "energy": (dataclasses.asdict(energy) if energy is not None else None)}
    cache.put(key, value)
    return {**value, "cached": False, "slot_wait_s": waited}


def predicted_latency(model, input_shape: tuple[int, int, int], config, folder) -> dict:
    """`latency.mode: predict`: the sum of the network's parts from the node's lookup table, in the
    shape of a measurement's record (median and p90 both the prediction), `source: predicted`."""
    from .latency import cpu_model, environment
    from .predictor import TARGETS as PREDICTABLE, LatencyTable

    if config.target not in PREDICTABLE:
        raise ValueError(f"latency mode 'predict' supports targets {', '.join(PREDICTABLE)}, not {config.target!r}")
    table = LatencyTable.for_target(Path(folder) / "latency-tables", config.target)
    if not table.calibrated:  # the node's first networks are measured, and correct the table
        measured = measure_latency(model, input_shape, config)
        table.calibrate(model, input_shape, measured.median_ms)
        return {**measured.as_dict(), "source": "measured", "measured": "end to end, calibrating the node's latency table"}
    predicted = table.predict(model, input_shape)
    return {"median_ms": predicted, "p90_ms": predicted, "min_ms": predicted, "runs": 0, "threads": 1,
            "engine": f"predicted from {len(table.entries)} timed parts ({table.timed_now} timed now), corrected "
                      f"by {len(table.calibration)} networks measured end to end",
            "cpu": cpu_model(), "torch_version": torch.__version__, "host": platform.node(), "target": config.target,
            "environment": environment(1, "latency table"), "source": "predicted"}


def _measured_energy(model, input_shape: tuple[int, int, int], request: EvalRequest):
    """Energy per inference on the latency target from the hardware's own meter: NVML for
    `torch-cuda`, the package's RAPL counter for the CPU targets; None where there is none."""
    from .energy_meter import NvmlMeter, RaplMeter
    from .latency import TARGETS

    if request.latency.target == "torch-cuda":
        import torch

        if not torch.cuda.is_available():
            return None
        properties = torch.cuda.get_device_properties(torch.cuda.current_device())
        meter = NvmlMeter.find(str(getattr(properties, "uuid", "") or "") or None)
    else:
        meter = RaplMeter.find()
    if meter is None:
        return None
    with eval_mode(model):  # inside measure_before_training's keeping_torch_threads()
        run, _ = TARGETS[request.latency.target](model, tuple(input_shape), request.latency.threads)
        return meter.measure(run, max(request.latency.runs, 200))


def measure_on_target(genotype_json: str, request: EvalRequest) -> dict:
    """Latency and energy of a genotype measured here, on the node that is the target device,
    before (or while) another node trains it: what `measure_before_training` returns, plus the node."""
    genotype = Genotype.from_json(genotype_json)
    torch.manual_seed(request.seed)
    model = build_model(genotype)
    shape = (genotype.in_channels, genotype.input_size, genotype.input_size)
    measured = measure_before_training(model, genotype, shape, request)
    return {**measured, "latency": {**measured["latency"], "measured_on": platform.node()}}


def apply_measurement(result: TrialResult, measured: dict) -> TrialResult:
    """A trial trained without its latency (the target device measured it): add it."""
    result.latency = measured["latency"]
    result.metrics.update(_measured_metrics(measured))
    if measured.get("energy"):
        result.energy_source = measured["energy"]["source"]
    return result
