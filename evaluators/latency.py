"""Latency at batch 1 on a named target, measured the way the literature asks
(docs/references.md, "Latency measurement"):
fixed input shape, warm-up, a fixed thread count, median and p90 over >= 50 runs, and every
measurement records the environment it ran in (CPU model and SIMD flags, threads, CPU affinity,
library versions, the engine used).

Targets (`LatencyConfig.target`):
- `cpu` (default): the packed binary engine (`bitnas.evaluators.engine`): binary convolutions as
  XNOR-popcount, full-precision layers in torch; what a deployed binary network costs here;
- `torch-cpu`: the torch model itself, binary layers *simulated* in fp32 (slower than float);
- `torch-cuda`: the torch model on the first CUDA device, where there is one;
- `onnxruntime`: the model exported to ONNX (binary layers simulated) in onnxruntime's CPU provider.
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from bitnas.errors import UserError

from .settings import LatencyConfig

TORCH_ENGINE = "torch-cpu (binary layers simulated in fp32)"
DEFAULT_TARGET = "cpu"
SIMD_FLAGS = ("sse4_2", "popcnt", "avx2", "fma", "avx512f", "avx512bw", "avx512_vpopcntdq", "avx512_vnni", "asimd",
              "sve")


class LatencyTargetError(UserError):
    """A latency target that does not exist or cannot run here; the message says which and why."""


@dataclass(frozen=True)
class LatencyMeasurement:
    median_ms: float
    p90_ms: float
    min_ms: float
    runs: int
    threads: int
    engine: str
    cpu: str
    torch_version: str
    host: str
    target: str = DEFAULT_TARGET
    environment: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def cpu_flags() -> tuple[str, ...]:
    """The SIMD features that decide binary-kernel speed (popcount width), as /proc/cpuinfo names them."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    present = set(line.split(":", 1)[1].split())
                    return tuple(flag for flag in SIMD_FLAGS if flag in present)
    except OSError:
        pass
    return ()


def environment(threads: int, engine: str) -> dict:
    versions = {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}
    for name in ("numba", "onnxruntime"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return {"cpu": cpu_model(), "cpu_flags": list(cpu_flags()), "machine": platform.machine(),
            "logical_cpus": os.cpu_count(), "cpu_affinity": affinity, "threads": threads, "engine": engine,
            "versions": versions, "host": platform.node()}


def _current_cpu() -> int | None:
    """The CPU this process runs on now (field 39 of /proc/self/stat), where Linux says."""
    try:
        with open("/proc/self/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[36])
    except (OSError, IndexError, ValueError):
        return None


class _PinnedToOneCpu:
    """For a one-thread measurement, pin the process to the CPU it is on, so the scheduler does
    not move it mid-measurement; restored afterwards. Does nothing where Linux affinity is absent."""

    def __init__(self, threads: int):
        self.threads, self.previous, self.pinned = threads, None, None

    def __enter__(self):
        if self.threads == 1 and hasattr(os, "sched_setaffinity"):
            cpu = _current_cpu()
            self.previous = os.sched_getaffinity(0)
            if cpu is not None and cpu in self.previous:
                os.sched_setaffinity(0, {cpu})
                self.pinned = cpu
        return self

    def __exit__(self, *exc):
        if self.pinned is not None:
            os.sched_setaffinity(0, self.previous)
        return False


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


# ---- targets: each prepares a batch-1 forward pass and names the engine that runs it -----------

Runner = Callable[[], object]
TargetFactory = Callable[[nn.Module, tuple[int, int, int], int], tuple[Runner, str]]
TARGETS: dict[str, TargetFactory] = {}


def register_target(name: str) -> Callable[[TargetFactory], TargetFactory]:
    def add(factory: TargetFactory) -> TargetFactory:
        TARGETS[name] = factory
        return factory

    return add


@register_target("cpu")
def _packed_engine(model: nn.Module, input_shape: tuple[int, int, int], threads: int) -> tuple[Runner, str]:
    import numba

    from .engine import ENGINE_NAME, compile_model

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    engine = compile_model(model, input_shape)
    sample = np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)
    fallbacks, simulated = engine.fallbacks, engine.simulated
    name = ENGINE_NAME
    if fallbacks:
        name += "; in torch: " + ", ".join(f"{step} ({reason})" for step, reason in fallbacks)
    if simulated:  # a quantized layer timed as its fp32 simulation: the figure is not the native one
        name += "; SIMULATED in fp32: " + ", ".join(simulated)
    return (lambda: engine.run_one(sample)), name


def _torch_runner(model: nn.Module, sample: torch.Tensor) -> Runner:
    def run():
        with torch.inference_mode():
            return model(sample)

    return run


@register_target("torch-cpu")
def _torch_cpu(model: nn.Module, input_shape: tuple[int, int, int], threads: int) -> tuple[Runner, str]:
    return _torch_runner(model, torch.randn(1, *input_shape)), TORCH_ENGINE


@register_target("torch-cuda")
def _torch_cuda(model: nn.Module, input_shape: tuple[int, int, int], threads: int) -> tuple[Runner, str]:
    if not torch.cuda.is_available():
        raise LatencyTargetError("latency target 'torch-cuda' needs a CUDA device; this torch build or machine has none")
    device_model = model.to("cuda")
    sample = torch.randn(1, *input_shape, device="cuda")
    run = _torch_runner(device_model, sample)

    def synchronised():
        run()
        torch.cuda.synchronize()

    return synchronised, f"torch-cuda {torch.cuda.get_device_name(0)} (binary layers simulated in fp32)"


@register_target("onnxruntime")
def _onnxruntime(model: nn.Module, input_shape: tuple[int, int, int], threads: int) -> tuple[Runner, str]:
    import onnxruntime

    sample = torch.randn(1, *input_shape)
    buffer = io.BytesIO()
    torch.onnx.export(model, (sample,), buffer, input_names=["image"], output_names=["logits"], dynamo=False)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    feed = {"image": sample.numpy()}
    return (lambda: session.run(["logits"], feed)), (
        f"onnxruntime {onnxruntime.__version__} CPUExecutionProvider (binary layers simulated in fp32)")


def time_runner(run: Runner, *, threads: int, runs: int, warmup: int) -> tuple[list[float], int | None]:
    """Milliseconds of each of `runs` calls of `run`, after `warmup` calls, with torch and numba
    on `threads` threads (and pinned to one CPU when that is 1), and the CPU pinned to (or None).
    The one protocol behind every latency figure bitnas reports, whole networks and the
    predictor's parts alike."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    numba = sys.modules.get("numba")  # only where the engine is in use
    if numba is not None:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    timings: list[float] = []
    pinning = _PinnedToOneCpu(threads)
    try:
        # Warm up before pinning: thread pools (numba's, torch's) start during the first calls, and
        # threads created while the process is pinned would share its one CPU and slow it 100x.
        for _ in range(max(1, warmup)):
            run()
        with pinning:
            for _ in range(runs):
                start = time.perf_counter_ns()
                run()
                timings.append((time.perf_counter_ns() - start) / 1e6)
    finally:
        torch.set_num_threads(previous_threads)
    return timings, pinning.pinned


@contextlib.contextmanager
def keeping_torch_threads() -> Iterator[None]:
    """torch leaves the block with the intra-op thread count it came with. numba's OpenMP threading
    layer, started by the engine's first `numba.set_num_threads`, sets the OpenMP thread count torch
    shares to the pool's size (every core): a trial that measured its latency then trained on two
    threads instead of `train_threads`, oversubscribing the node and rounding differently from a
    trial whose latency came from the cache (tests/test_measurement.py)."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in eval mode inside the block, in the mode it had after it (a trial is measured
    before it trains)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


# Targets whose first call compiles code that later runners in the same process reuse: the
# engine's numba kernels (cached per process and on disk). An ONNX session or a torch model is
# built anew by every runner, so compiling those ahead would only do the work twice.
_COMPILED_PER_PROCESS = frozenset({"cpu"})


def _target(config: LatencyConfig) -> TargetFactory:
    if config.target not in TARGETS:
        raise LatencyTargetError(f"unknown latency target {config.target!r}; known targets: {', '.join(sorted(TARGETS))}")
    return TARGETS[config.target]


def compile_for_target(model: nn.Module, input_shape: tuple[int, int, int], config: LatencyConfig) -> None:
    """Build `config.target`'s runner for `model` and call it once, untimed, where that compiles
    code the timed runner will reuse (numba's kernels for the network's layer shapes: tens of
    seconds on a cold cache). Called outside the node's measurement slot, so that compiling does
    not pause every other worker's training on the node (evaluate.measure_before_training)."""
    factory = _target(config)
    if config.target not in _COMPILED_PER_PROCESS:
        return
    with eval_mode(model), torch.random.fork_rng(), keeping_torch_threads():
        run, _ = factory(model, tuple(input_shape), config.threads)
        run()


def measure_latency(model: nn.Module, input_shape: tuple[int, int, int], config: LatencyConfig) -> LatencyMeasurement:
    """Median and p90 wall time of one batch-1 forward pass on `config.target`, in milliseconds."""
    if config.runs < 1:
        raise ValueError("latency runs must be >= 1")
    factory = _target(config)
    with eval_mode(model), keeping_torch_threads():
        run, engine = factory(model, tuple(input_shape), config.threads)
        timings, pinned = time_runner(run, threads=config.threads, runs=config.runs, warmup=config.warmup)
    return LatencyMeasurement(
        median_ms=statistics.median(timings), p90_ms=_percentile(timings, 0.9), min_ms=min(timings),
        runs=config.runs, threads=config.threads, engine=engine, cpu=cpu_model(),
        torch_version=torch.__version__, host=platform.node(), target=config.target,
        environment={**environment(config.threads, engine), "pinned_cpu": pinned},
    )


def measure_side_by_side(first: nn.Module, second: nn.Module, input_shape: tuple[int, int, int],
                         config: LatencyConfig, rounds: int) -> list[tuple[LatencyMeasurement, LatencyMeasurement]]:
    """Both networks measured in turn, `rounds` times: a 2-core VM's speed swings by up to 1.7x
    within minutes, so a comparison takes its two figures side by side (pruned against unpruned:
    benchmarks/pruning.py, `bitnas export --prune`)."""
    return [tuple(pair) for pair in measure_in_turn([first, second], input_shape, config, rounds)]


def measure_in_turn(models: list[nn.Module], input_shape: tuple[int, int, int], config: LatencyConfig, rounds: int,
                    *, alternate: bool = False) -> list[list[LatencyMeasurement]]:
    """Every model measured once per round, `rounds` times; per round the measurements in the
    models' order. `alternate` runs every other round in reverse order, so that no model always
    runs first (or last). Random inputs are drawn on a forked RNG."""
    results = []
    with torch.random.fork_rng():
        for number in range(rounds):
            order = list(range(len(models)))[::-1 if alternate and number % 2 else 1]
            measured = {index: measure_latency(models[index], input_shape, config) for index in order}
            results.append([measured[index] for index in range(len(models))])
    return results
