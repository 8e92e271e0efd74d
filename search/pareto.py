"""Pareto fronts and hypervolume on minimisation vectors (maximised objectives negated first)."""

from __future__ import annotations

from typing import Sequence

Vector = Sequence[float]


def dominates(a: Vector, b: Vector) -> bool:
    """a is no worse than b everywhere and strictly better somewhere."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_indices(points: Sequence[Vector]) -> list[int]:
    """Indices of the non-dominated points; of identical points, the first is kept."""
    front = []
    for i, p in enumerate(points):
        if any(dominates(q, p) or (j < i and tuple(q) == tuple(p)) for j, q in enumerate(points) if j != i):
            continue
        front.append(i)
    return front


def hypervolume(points: Sequence[Vector], reference: Vector) -> float:
    """Volume dominated by `points` and bounded by `reference` (exact slicing; fine for small fronts).

    Points that do not strictly beat the reference in every coordinate contribute nothing.
    """
    inside = [tuple(p) for p in points if all(x < r for x, r in zip(p, reference))]
    if not inside:
        return 0.0
    inside = [inside[i] for i in pareto_indices(inside)]
    return _slice_volume(inside, tuple(reference))


def _slice_volume(points: list[tuple[float, ...]], reference: tuple[float, ...]) -> float:
    if len(reference) == 1:
        return reference[0] - min(p[0] for p in points)
    ordered = sorted(points, key=lambda p: p[-1])
    volume = 0.0
    for i, point in enumerate(ordered):
        upper = ordered[i + 1][-1] if i + 1 < len(ordered) else reference[-1]
        depth = upper - point[-1]
        if depth > 0:
            volume += depth * _slice_volume([p[:-1] for p in ordered[: i + 1]], reference[:-1])
    return volume
