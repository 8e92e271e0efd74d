"""Constraints: budgets from the config turned into Optuna constraint values (<= 0 is feasible)."""

from __future__ import annotations

from .config import ConstraintsSection

# config key -> (metric it bounds, +1 for an upper bound, -1 for a lower bound)
BOUNDS = {
    "max_latency_ms": ("latency_ms", +1),
    "max_size_kb": ("size_kb", +1),
    "max_energy_uj": ("energy_uj", +1),
    "min_accuracy": ("val_accuracy", -1),
}


def constraint_values(section: ConstraintsSection, metrics: dict[str, float]) -> dict[str, float]:
    """For every budget that is set: how far the trial is over it (positive = violated)."""
    values = {}
    for key, (metric, sign) in BOUNDS.items():
        bound = getattr(section, key)
        if bound is not None:
            values[key] = sign * (metrics[metric] - bound)
    return values


def violations(values: dict[str, float]) -> list[str]:
    """Human-readable broken budgets, e.g. ['latency_ms > max_latency_ms']."""
    return [f"{BOUNDS[key][0]} {'>' if BOUNDS[key][1] > 0 else '<'} {key}" for key, value in values.items() if value > 0]
