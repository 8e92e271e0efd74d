"""The strategy benchmark's two hypervolumes (benchmarks/search_quality.py): the hand designs' box
(references' worst values as the reference point, costs on log scales) and the ceiling of the
configured one, checked against volumes worked out by hand."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

from bitnas.search.objectives import objectives_for

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
OBJECTIVES = objectives_for(["accuracy", "latency_ms", "energy_uj"])
REFERENCES = {"slow": [0.5, 2.0, 10.0], "hungry": [0.8, 1.0, 20.0]}


@pytest.fixture(scope="module")
def search_quality():
    sys.path.insert(0, str(BENCHMARKS))  # the benchmark imports its sibling _output
    try:
        spec = importlib.util.spec_from_file_location("search_quality", BENCHMARKS / "search_quality.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_the_box_is_the_references_worst_value_of_each_objective(search_quality):
    assert search_quality.box_reference(REFERENCES, OBJECTIVES) == [-0.5, 2.0, 20.0]


def test_box_hypervolume_multiplies_accuracy_gained_by_the_log_factors_the_costs_beat(search_quality):
    box = search_quality.box_reference(REFERENCES, OBJECTIVES)
    one = search_quality.box_hypervolume([[0.9, 1.0, 10.0]], box, OBJECTIVES)
    assert one == pytest.approx(0.4 * math.log(2) * math.log(2))
    # Twice as fast counts the same wherever it lies: halving the latency again adds one more log 2.
    faster = search_quality.box_hypervolume([[0.9, 0.5, 10.0]], box, OBJECTIVES)
    assert faster == pytest.approx(0.4 * math.log(4) * math.log(2))


def test_a_front_outside_the_box_covers_none_of_it(search_quality):
    box = search_quality.box_reference(REFERENCES, OBJECTIVES)
    worse_accuracy = [[0.45, 0.1, 1.0]]  # fast and frugal, but below the weakest design
    slower = [[0.99, 3.0, 1.0]]          # accurate, but slower than the slowest design
    assert search_quality.box_hypervolume(worse_accuracy + slower, box, OBJECTIVES) == 0.0
    assert search_quality.box_hypervolume([], box, OBJECTIVES) == 0.0


def test_the_ceiling_is_the_volume_of_the_run_s_best_values_as_one_network(search_quality):
    rows = [{"front": [[0.9, 1.5, 12.0], [0.7, 0.5, 30.0]]}, {"front": [[0.6, 3.0, 5.0]]}]
    ideal = (0.9, 0.5, 5.0)  # the best accuracy, latency and energy, each from a different network
    expected = ideal[0] * (10.0 - ideal[1]) * (100.0 - ideal[2])
    reference = {"accuracy": 0.0, "latency_ms": 10.0, "energy_uj": 100.0}
    assert search_quality.ceiling(rows, REFERENCES, OBJECTIVES, reference) == pytest.approx(expected)
    # No front of the run scores more than the ceiling.
    for row in rows:
        front = [[o.minimised(v) for o, v in zip(OBJECTIVES, point)] for point in row["front"]]
        volume = search_quality.hypervolume(front, [0.0, 10.0, 100.0])
        assert volume <= expected
