"""Latency at batch 1 on this CPU, measured the way the literature asks (numbers.md):
fixed input shape, warm-up, a fixed thread count, median and p90 over many runs.

Until the packed binary engine exists, this times the torch model itself, in which binary layers
are *simulated* in float; the result says so in `engine`, because a simulated binary network is
slower than the float network it stands for.
"""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import asdict, dataclass
from functools import lru_cache

import torch
from torch import nn

TORCH_ENGINE = "torch-cpu (binary layers simulated in fp32)"


@dataclass(frozen=True)
class LatencyConfig:
    runs: int = 30
    warmup: int = 5
    threads: int = 1


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


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def measure_latency(model: nn.Module, input_shape: tuple[int, int, int], config: LatencyConfig) -> LatencyMeasurement:
    """Median and p90 wall time of one batch-1 forward pass, in milliseconds."""
    if config.runs < 1:
        raise ValueError("latency runs must be >= 1")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    was_training = model.training
    model.eval()
    sample = torch.randn(1, *input_shape)
    timings: list[float] = []
    try:
        with torch.inference_mode():
            for _ in range(config.warmup):
                model(sample)
            for _ in range(config.runs):
                start = time.perf_counter_ns()
                model(sample)
                timings.append((time.perf_counter_ns() - start) / 1e6)
    finally:
        torch.set_num_threads(previous_threads)
        model.train(was_training)
    return LatencyMeasurement(
        median_ms=statistics.median(timings), p90_ms=_percentile(timings, 0.9), min_ms=min(timings),
        runs=config.runs, threads=config.threads, engine=TORCH_ENGINE, cpu=cpu_model(),
        torch_version=torch.__version__, host=platform.node(),
    )
