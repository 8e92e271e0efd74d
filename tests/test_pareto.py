import pytest

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
