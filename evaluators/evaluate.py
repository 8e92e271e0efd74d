"""evaluate(genotype, request) -> TrialResult: the body of one trial, wherever Ray runs it.

Pure with respect to the study: it reads a genotype and a request, trains, counts, measures and
returns data. It never touches Optuna storage or MLflow; the driver records what it returns.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field

import torch
from safetensors.torch import save as safetensors_bytes

from bitnas.spaces import Genotype, build_model, count_costs
from bitnas.spaces.budget import ResourceBudget, check_budget

from .data import DataOptions, load_dataset
from .distill import Teacher
from .early_stopping import EarlyStoppingRule
from .proxies import ProxyPrefilter
from .energy import estimate_energy
from .latency import LatencyConfig, measure_latency
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


def evaluate(genotype_json: str, request: EvalRequest, *, measure_here: bool = True) -> TrialResult:
    """Train, count, estimate energy and (unless `measure_here` is False, when another node that
    is the target device measures it: `measure_trained`) measure latency."""
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
    model = build_model(genotype)
    stop = request.early_stopping.callback(request.peer_curves) if request.early_stopping else None
    teacher = request.teacher.model() if request.teacher is not None else None
    proxy_metrics, skipped = {}, False
    if request.prefilter is not None:
        score = request.prefilter.score(model, data.train, request.seed)
        proxy_metrics = {f"proxy_{request.prefilter.proxy}": score}
        skipped = request.prefilter.rejects(score)
    if skipped:  # ranked among the hopeless by the proxy: not trained, its accuracy is the untrained one
        outcome = TrainingOutcome(0, 0.0, float("nan"), (), "none", stopped_early=True)
    else:
        outcome = train(model, data.train, data.val, request.training, seed=request.seed, teacher=teacher,
                        should_stop=stop)
    costs = count_costs(model, data.input_shape)
    energy = estimate_energy(costs, request.energy_profile)
    latency = measure_latency(model, data.input_shape, request.latency) if measure_here else None
    measured = (_measured_energy(model, data.input_shape, request)
                if measure_here and request.energy_meter == "auto" else None)
    metrics = {
        "val_accuracy": outcome.epoch_val_accuracy[-1] if outcome.epoch_val_accuracy else accuracy(model, data.val),
        **({"latency_ms": latency.median_ms, "latency_p90_ms": latency.p90_ms} if latency else {}),
        # Where the hardware has a meter the objective is measured; the analytic split is kept too.
        "energy_uj": measured.per_inference_uj if measured else energy.total_uj,
        "energy_analytic_uj": energy.total_uj,
        "energy_compute_uj": energy.compute_uj,
        "energy_memory_uj": energy.memory_uj,
        **{key: float(value) for key, value in costs.totals().items()},
        "train_seconds": outcome.seconds,
        "train_steps": float(outcome.steps),
        "final_loss": outcome.final_loss,
        "epochs_trained": float(len(outcome.epoch_val_accuracy)),
        "stopped_early": float(outcome.stopped_early),
        **proxy_metrics,
        **({"skipped_by_proxy": 1.0} if skipped else {}),
    }
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    return TrialResult(
        genotype_hash=genotype.hash(), metrics=metrics, epoch_val_accuracy=list(outcome.epoch_val_accuracy),
        latency=latency.as_dict() if latency else {}, energy_source=measured.source if measured else energy.source,
        cost_rows=[{**row, "energy_pj": pj} for row, pj in zip(costs.rows(), energy.by_layer_pj)],
        weights=safetensors_bytes(state), node=platform.node(), pid=os.getpid(), seconds=time.perf_counter() - started,
        stopped_early=outcome.stopped_early, request_fingerprint=request.fingerprint(),
    )


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
    model.eval()
    run, _ = TARGETS[request.latency.target](model, tuple(input_shape), request.latency.threads)
    return meter.measure(run, max(request.latency.runs, 200))


def measure_trained(genotype_json: str, weights: bytes, request: EvalRequest) -> dict:
    """Latency of a trained network, measured here (on the node that is the target device)."""
    from safetensors.torch import load as safetensors_load

    genotype = Genotype.from_json(genotype_json)
    model = build_model(genotype)
    model.load_state_dict(safetensors_load(weights))
    shape = (genotype.in_channels, genotype.input_size, genotype.input_size)
    return {**measure_latency(model, shape, request.latency).as_dict(), "measured_on": platform.node()}

