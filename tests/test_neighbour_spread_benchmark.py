"""benchmarks/neighbour_spread.py's split of a network-by-seed accuracy table into what the seed
moves for every network (its data) and each network's own draw, checked on tables built by hand."""

from __future__ import annotations

import importlib.util
import statistics
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def neighbour_spread():
    sys.path.insert(0, str(BENCHMARKS))  # the benchmark imports its siblings _output and stem_pool
    try:
        spec = importlib.util.spec_from_file_location("neighbour_spread", BENCHMARKS / "neighbour_spread.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def test_a_shift_shared_by_every_network_is_all_seed_and_no_draw(neighbour_spread):
    shifts = [0.0, 0.02, -0.01, 0.005]
    table = [[base + shift for shift in shifts] for base in (0.90, 0.95, 0.97)]
    seed_sd, draw_sd = neighbour_spread.seed_and_draw_spread(table)
    assert seed_sd == pytest.approx(statistics.stdev(shifts))
    assert draw_sd == pytest.approx(0.0, abs=1e-12)


def test_networks_that_differ_only_by_their_own_draws_share_no_seed_effect(neighbour_spread):
    # two networks whose draws (mean 0) cancel at every seed: the per-seed mean never moves
    draws = (0.01, -0.02, 0.01)
    table = [[0.95 + d for d in draws], [0.93 - d for d in draws]]
    seed_sd, draw_sd = neighbour_spread.seed_and_draw_spread(table)
    assert seed_sd == pytest.approx(0.0, abs=1e-12)
    # residuals +-d; sum of squares 2 * (0.01^2 + 0.02^2 + 0.01^2) over (2-1)(3-1) degrees of freedom
    assert draw_sd == pytest.approx((2 * 0.0006 / 2) ** 0.5)


@pytest.mark.parametrize("table", [[[0.9, 0.8]], [[0.9], [0.8]], [[0.9, 0.8], [0.7]]])
def test_a_table_too_small_or_ragged_is_refused(neighbour_spread, table):
    with pytest.raises(ValueError, match="at least 2 networks"):
        neighbour_spread.seed_and_draw_spread(table)
