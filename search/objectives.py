"""Objectives by name: which metric of a TrialResult each reads, and which way is better."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Objective:
    name: str
    metric: str
    direction: str  # "maximize" or "minimize", as Optuna spells it
    label: str

    def minimised(self, value: float) -> float:
        """The value on a scale where smaller is better (for Pareto and hypervolume maths)."""
        return -value if self.direction == "maximize" else value


OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective("accuracy", "val_accuracy", "maximize", "validation accuracy"),
    Objective("latency_ms", "latency_ms", "minimize", "latency (ms, batch 1)"),
    Objective("energy_uj", "energy_uj", "minimize", "energy per inference (uJ)"),
    Objective("size_kb", "size_kb", "minimize", "model size (KiB)"),
    Objective("ops", "ops", "minimize", "OPs (BOPs/64 + FLOPs)"),
    Objective("params", "params", "minimize", "parameters"),
)}


def objectives_for(names: tuple[str, ...] | list[str]) -> list[Objective]:
    return [OBJECTIVES[name] for name in names]
