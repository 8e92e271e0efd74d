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
# Whole networks a node measures end to end before its table's predictions are corrected (see
# `LatencyTable.corrected`); with `latency.mode: predict` these are the node's first trials.
CALIBRATION_NETWORKS = 8


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


def _runner(module: nn.Module, input_shape: tuple[int, int, int], target: str,
            steps: list | None = None) -> Callable[[], object]:
    """One batch-1 call of a part: on `cpu`, the engine steps the whole network compiled for it
    (`steps`), so a part is timed in exactly the code the network runs; in torch otherwise."""
    sample = torch.randn(1, *input_shape)
    if target == "cpu" and steps is not None:
        from .engine.compiler import run_steps

        value = np.ascontiguousarray(sample[0].numpy().transpose(1, 2, 0))
        return lambda: run_steps(steps, value)

    def run():
        with torch.inference_mode():
            return module(sample)

    return run


def part_steps(model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, list]:
    """The compiled engine steps of each part of `network_parts`, by part name: a step named
    `stages.3...` belongs to part `stages.3`, `stem...` to the stem, the rest to the head."""
    from .engine import compile_model

    groups: dict[str, list] = {name: [] for name, _ in network_parts(model)}
    for step in compile_model(model, input_shape).steps:
        head, _, rest = step.name.partition(".")
        name = f"stages.{rest.split('.')[0]}" if head == "stages" else ("stem" if head == "stem" else "head")
        groups[name].append(step)
    return groups


def time_part(module: nn.Module, input_shape: tuple[int, int, int], target: str, *, runs: int = 30,
              warmup: int = 5, steps: list | None = None) -> float:
    """Median milliseconds of one batch-1 call of `module` (or of its compiled `steps`) on
    `target`, one thread, under the same protocol as a whole network's measurement (numba and
    torch on one thread, pinned)."""
    timings, _ = time_runner(_runner(module.eval(), input_shape, target, steps), threads=1, runs=runs, warmup=warmup)
    return statistics.median(timings)


class LatencyTable:
    """Per-part latencies for one target on one machine, kept in a JSON file."""

    def __init__(self, path: Path, target: str):
        if target not in TARGETS:
            raise ValueError(f"the latency predictor supports targets {', '.join(TARGETS)}, not {target!r}")
        self.path, self.target = Path(path), target
        self.entries: dict[str, float] = {}
        # (sum of parts, steps, measured end to end) of whole networks measured on this node: the
        # correction fitted to them covers what a sum of parts misses (see `corrected`).
        self.calibration: list[tuple[float, float, float]] = []
        if self.path.is_file():
            stored = json.loads(self.path.read_text())
            if stored.get("target") == target and stored.get("cpu") == cpu_model():
                self.entries = {k: float(v) for k, v in stored["entries"].items()}
                self.calibration = [tuple(map(float, point)) for point in stored.get("calibration", [])]
        self.timed_now = 0

    @classmethod
    def for_target(cls, folder: Path, target: str) -> LatencyTable:
        return cls(Path(folder) / f"{target}-{platform.node()}.json", target)

    def part_ms(self, module: nn.Module, input_shape: tuple[int, int, int], steps: list | None = None) -> float:
        key = part_key(module, input_shape)
        if key not in self.entries:
            self.entries[key] = time_part(module, input_shape, self.target, steps=steps)
            self.timed_now += 1
        return self.entries[key]

    def parts_ms(self, model: nn.Module, input_shape: tuple[int, int, int]) -> tuple[float, int]:
        """(sum of the parts' milliseconds, number of engine steps): times unseen parts once."""
        model.eval()
        total, shape = 0.0, tuple(input_shape)
        x = torch.zeros(1, *shape)
        steps = part_steps(model, shape) if self.target == "cpu" else {}
        with torch.inference_mode():
            for name, part in network_parts(model):
                total += self.part_ms(part, shape, steps.get(name))
                x = part(x)
                shape = tuple(x.shape[1:])
        if self.timed_now:
            self.save()
        return total, sum(len(group) for group in steps.values()) or len(network_parts(model))

    def predict(self, model: nn.Module, input_shape: tuple[int, int, int]) -> float:
        """Predicted batch-1 latency of `model` in milliseconds: the sum of its parts, corrected
        once the table is calibrated (times unseen parts once)."""
        return self.corrected(*self.parts_ms(model, input_shape))

    @property
    def calibrated(self) -> bool:
        return len(self.calibration) >= CALIBRATION_NETWORKS

    def corrected(self, parts_ms: float, steps: int) -> float:
        """A sum of parts misses what happens between them (a whole network's caches are colder,
        and every hand-over between steps costs a little): measured ~ a * sum + b * steps + c,
        fitted by least squares to the calibration networks; the plain sum until there are enough."""
        if not self.calibrated:
            return parts_ms
        points = np.asarray(self.calibration, dtype=np.float64)
        features = np.column_stack([points[:, 0], points[:, 1], np.ones(len(points))])
        coefficients, *_ = np.linalg.lstsq(features, points[:, 2], rcond=None)
        predicted = float(coefficients @ [parts_ms, steps, 1.0])
        return predicted if predicted > 0 else parts_ms

    def calibrate(self, model: nn.Module, input_shape: tuple[int, int, int], measured_ms: float) -> None:
        """Record a network measured end to end on this node (the correction's data)."""
        parts, steps = self.parts_ms(model, input_shape)
        self.calibration.append((parts, float(steps), float(measured_ms)))
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.path.with_suffix(f".{os.getpid()}.tmp")
        scratch.write_text(json.dumps({"target": self.target, "cpu": cpu_model(), "torch": torch.__version__,
                                       "entries": self.entries, "calibration": self.calibration},
                                      indent=1, sort_keys=True))
        os.replace(scratch, self.path)  # never a half-written table


def error_summary(measured: list[float], predicted: list[float]) -> dict[str, float]:
    """Share of predictions within +-10% of measured, and the mean absolute percentage error."""
    errors = np.abs(np.asarray(predicted) - np.asarray(measured)) / np.asarray(measured)
    return {"within_10pct": float((errors <= 0.10).mean()), "mape": float(errors.mean()), "n": len(errors)}
