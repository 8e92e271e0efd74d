import itertools
import random

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitnas.search.pareto import dominates, hypervolume, pareto_indices


def test_dominance():
    assert dominates((1, 1), (1, 2))
    assert not dominates((1, 2), (1, 2))
    assert not dominates((0, 3), (1, 2))


def test_front_keeps_first_of_duplicates_and_drops_dominated():
    assert pareto_indices([(1, 2), (2, 1), (2, 2), (1, 2)]) == [0, 1]


@pytest.mark.parametrize("points, reference, volume", [
    ([(1, 2), (2, 1)], (3, 3), 3.0),
    ([(0, 0, 0)], (1, 2, 3), 6.0),
    ([(1, 1, 1), (0, 2, 2)], (3, 3, 3), 9.0),   # 8 + 3 - 2 overlap
    ([(5, 5)], (3, 3), 0.0),                     # outside the reference box
    ([], (1, 1), 0.0),
])
def test_hypervolume_by_hand(points, reference, volume):
    assert hypervolume(points, reference) == pytest.approx(volume)


def test_dominated_points_add_no_volume():
    assert hypervolume([(1, 1), (2, 2)], (3, 3)) == pytest.approx(hypervolume([(1, 1)], (3, 3)))


def _brute_front(points):
    """The definition, point by point: kept if nothing dominates it and no earlier twin exists."""
    return [i for i, p in enumerate(points)
            if not any(dominates(q, p) or (j < i and tuple(q) == tuple(p)) for j, q in enumerate(points) if j != i)]


def _brute_volume(points, reference, cells=40):
    """Hypervolume counted on a grid fine enough for integer coordinates in [0, cells)."""
    inside = 0
    for cell in itertools.product(*(range(int(r)) for r in reference)):
        centre = [c + 0.5 for c in cell]
        inside += any(all(x <= y for x, y in zip(p, centre)) for p in points)
    return float(inside)


_points = st.integers(min_value=1, max_value=3).flatmap(
    lambda m: st.lists(st.tuples(*[st.integers(0, 6)] * m), max_size=12).map(lambda p: (m, p)))


@settings(max_examples=150, deadline=None)
@given(_points)
def test_front_and_volume_match_their_definitions(case):
    dims, points = case
    assert pareto_indices(points) == _brute_front(points)
    reference = (6,) * dims
    assert hypervolume(points, reference) == pytest.approx(_brute_volume(points, reference))


def test_front_agrees_with_optunas_best_trials():
    """On the same trials (no duplicates or early stops to leave out), the front is Optuna's own."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    rng = random.Random(7)
    for _ in range(300):
        study.add_trial(optuna.trial.create_trial(
            values=[rng.random(), rng.lognormvariate(0, 1), round(rng.random(), 2)], params={}, distributions={}))
    signs = [-1, 1, 1]
    vectors = [[s * v for s, v in zip(signs, t.values)] for t in study.trials]
    assert {study.trials[i].number for i in pareto_indices(vectors)} == {t.number for t in study.best_trials}
