"""Latency predicted from a lookup table: each distinct part of a network (the stem, one block at
one input shape and configuration, the head) is timed once on the target and cached on disk;
a network's latency is the sum of its parts. This is how FBNet, OFA and ProxylessNAS predict
latency, and it ignores what happens between parts (fusion, caches, the hand-over between the
engine and torch), which is why `benchmarks/predictor.py` checks it against end-to-end
measurements before anyone relies on it (nn-Meter: 99% of predictions within +-10% on a phone CPU).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .latency import cpu_model, time_runner

TARGETS = ("cpu", "torch-cpu")


def network_parts(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The parts a network is timed by: stem, every block, and the head (head conv, pool, classifier)."""
    parts: list[tuple[str, nn.Module]] = [("stem", model.stem)]
    parts += [(f"stages.{index}", block) for index, block in enumerate(model.stages)]
    head_conv = [model.head] if hasattr(model, "head") else []
    parts.append(("head", nn.Sequential(*head_conv, model.head_act, model.pool, nn.Flatten(1), model.fc)))
    return parts


def part_key(module: nn.Module, input_shape: tuple[int, ...]) -> str:
    """Identical configurations share a key: the module's structure (its repr names every layer's
    sizes, kernel, stride, groups and quantizers) at one input shape."""
    structure = f"{type(module).__name__}|{tuple(input_shape)}|{module!r}"
    return hashlib.sha256(structure.encode()).hexdigest()[:20]


def _runner(module: nn.Module, input_shape: tuple[int, int, int], target: str) -> Callable[[], object]:
    sample = torch.randn(1, *input_shape)
    # The engine runs a network's head (pool and classifier) in torch as one step, so the head is
    # timed in torch on either target.
    if target == "cpu" and not any(isinstance(m, nn.Linear) for m in module.modules()):
        from .engine import EngineModel
        from .engine.compiler import compile_module

        engine = EngineModel(compile_module(module.eval(), "part"), input_shape)
        image = sample[0].numpy()
        return lambda: engine.run_one(image)

    def run():
        with torch.inference_mode():
            return module(sample)

    return run


def time_part(module: nn.Module, input_shape: tuple[int, int, int], target: str, *, runs: int = 30,
              warmup: int = 5) -> float:
    """Median milliseconds of one batch-1 call of `module` on `target`, one thread, under the same
    protocol as a whole network's measurement (numba and torch on one thread, pinned)."""
    timings, _ = time_runner(_runner(module.eval(), input_shape, target), threads=1, runs=runs, warmup=warmup)
    return statistics.median(timings)


class LatencyTable:
    """Per-part latencies for one target on one machine, kept in a JSON file."""

    def __init__(self, path: Path, target: str):
        if target not in TARGETS:
            raise ValueError(f"the latency predictor supports targets {', '.join(TARGETS)}, not {target!r}")
        self.path, self.target = Path(path), target
        self.entries: dict[str, float] = {}
        if self.path.is_file():
            stored = json.loads(self.path.read_text())
            if stored.get("target") == target and stored.get("cpu") == cpu_model():
                self.entries = {k: float(v) for k, v in stored["entries"].items()}
        self.timed_now = 0

    @classmethod
    def for_target(cls, folder: Path, target: str) -> LatencyTable:
        return cls(Path(folder) / f"{target}-{platform.node()}.json", target)

    def part_ms(self, module: nn.Module, input_shape: tuple[int, int, int]) -> float:
        key = part_key(module, input_shape)
        if key not in self.entries:
            self.entries[key] = time_part(module, input_shape, self.target)
            self.timed_now += 1
        return self.entries[key]

    def predict(self, model: nn.Module, input_shape: tuple[int, int, int]) -> float:
        """Predicted batch-1 latency of `model` in milliseconds (times unseen parts once)."""
        model.eval()
        total, shape = 0.0, tuple(input_shape)
        x = torch.zeros(1, *shape)
        with torch.inference_mode():
            for _, part in network_parts(model):
                total += self.part_ms(part, shape)
                x = part(x)
                shape = tuple(x.shape[1:])
        if self.timed_now:
            self.save()
        return total

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.path.with_suffix(f".{os.getpid()}.tmp")
        scratch.write_text(json.dumps({"target": self.target, "cpu": cpu_model(), "torch": torch.__version__,
                                       "entries": self.entries}, indent=1, sort_keys=True))
        os.replace(scratch, self.path)  # never a half-written table


def error_summary(measured: list[float], predicted: list[float]) -> dict[str, float]:
    """Share of predictions within +-10% of measured, and the mean absolute percentage error."""
    errors = np.abs(np.asarray(predicted) - np.asarray(measured)) / np.asarray(measured)
    return {"within_10pct": float((errors <= 0.10).mean()), "mape": float(errors.mean()), "n": len(errors)}
