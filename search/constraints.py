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
# Every constraint a trial can carry: the budgets, and the floor derived from the number of classes.
CONSTRAINTS = {**BOUNDS, "accuracy_floor": ("val_accuracy", -1)}


def accuracy_floor(section: ConstraintsSection, num_classes: int) -> float | None:
    """The validation accuracy `accuracy_floor` asks for with this many classes (None: no floor)."""
    if section.accuracy_floor is None:
        return None
    chance = 1.0 / max(1, num_classes)
    return chance + section.accuracy_floor * (1.0 - chance)


def constraint_values(section: ConstraintsSection, metrics: dict[str, float], num_classes: int) -> dict[str, float]:
    """For every budget that is set, and the accuracy floor: how far the trial is over it (positive = violated).

    A trial scored from the supernet has a one-shot accuracy, a ranking rather than the accuracy the
    network reaches: its accuracy bounds count as met (0) and are judged on the finalists."""
    one_shot = bool(metrics.get("supernet_score"))
    values = {}
    for key, (metric, sign) in BOUNDS.items():
        bound = getattr(section, key)
        if bound is not None:
            values[key] = 0.0 if one_shot and metric == "val_accuracy" else sign * (metrics[metric] - bound)
    floor = accuracy_floor(section, num_classes)
    if floor is not None:
        values["accuracy_floor"] = 0.0 if one_shot else floor - metrics["val_accuracy"]
    return values


def violations(values: dict[str, float]) -> list[str]:
    """Human-readable broken budgets, e.g. ['latency_ms > max_latency_ms']."""
    return [f"{CONSTRAINTS[key][0]} {'>' if CONSTRAINTS[key][1] > 0 else '<'} {key}"
            for key, value in values.items() if value > 0]
