"""The strategy benchmark's bookkeeping (benchmarks/search_quality.py): its two hypervolumes (the hand
designs' box: the references' worst values as the reference point, costs on log scales; and the
ceiling of the configured one), checked against volumes worked out by hand; which strategy is the
default; and a run that refuses to go on once a strategy's settings have changed."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from bitnas.search.config import SearchConfig
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


def test_the_default_strategy_is_the_one_bitnas_search_runs_with_its_defaults(search_quality):
    defaults = [name for name in search_quality.STRATEGIES if search_quality.is_default(name, SearchConfig())]
    assert defaults == ["pool-scratch"]
    grown = SearchConfig(grown_neighbours=2)
    assert [name for name in search_quality.STRATEGIES if search_quality.is_default(name, grown)] == ["grown-scratch"]
    # the default before the stem's max pool joined the space
    widened = SearchConfig(space=search_quality.STRATEGIES["reactnet-scratch"]["space"])
    assert [name for name in search_quality.STRATEGIES if search_quality.is_default(name, widened)] == ["reactnet-scratch"]
    earlier = SearchConfig(references=["bireal_small", "mobilenetv2_int8_small"], space=search_quality.EARLIER_SPACE)
    assert [name for name in search_quality.STRATEGIES
            if search_quality.is_default(name, earlier)] == ["neighbours-scratch"]


def test_a_run_refuses_to_go_on_once_a_strategy_s_settings_have_changed(search_quality, tmp_path):
    search_quality.check_settings(tmp_path, ["random-scratch", "reactnet-scratch"])
    search_quality.check_settings(tmp_path, ["random-scratch", "reactnet-scratch"])  # unchanged: goes on
    saved = json.loads((tmp_path / "settings.json").read_text())
    assert saved["random-scratch"]["space"] == SearchConfig().space.model_dump(mode="json")
    assert saved["reactnet-scratch"]["references"] == ["bireal_small", "mobilenetv2_int8_small", "reactnet_small"]
    # random search begun in the earlier default space, resumed after the space was widened
    saved["random-scratch"]["space"]["stages"][0]["widths"] = [8, 16, 24]
    (tmp_path / "settings.json").write_text(json.dumps(saved))
    with pytest.raises(SystemExit, match=r"random-scratch has changed since .* \(space\)"):
        search_quality.check_settings(tmp_path, ["random-scratch", "reactnet-scratch"])
    search_quality.check_settings(tmp_path, ["reactnet-scratch"])  # the unchanged one alone goes on


def test_settings_recorded_before_the_grown_twins_still_match(search_quality):
    # pool-scratch ran before `grown_neighbours` existed: its studies run without grown twins and
    # its recorded settings leave the key out, as they were written then
    assert search_quality.strategy_keys("pool-scratch")["grown_neighbours"] == 0
    assert "grown_neighbours" not in search_quality.effective_settings("pool-scratch")
    assert search_quality.effective_settings("grown-scratch")["grown_neighbours"] == 2
    recorded = BENCHMARKS.parent / "results/bench/search_quality/full-10min-pool/settings.json"
    if recorded.exists():
        assert json.loads(recorded.read_text())["pool-scratch"] == search_quality.effective_settings("pool-scratch")


def test_a_front_is_judged_on_single_measurements_plus_its_side_by_side_verdict(search_quality, tmp_path):
    row = {"strategy": "grown-scratch", "seed": 1, "front": [[0.6, 1.5, 5.0]]}  # dominates "slow" only
    config = SearchConfig()
    # neither the verdict nor the study it would be timed from: it cannot be judged
    assert search_quality.dominated(tmp_path, row, REFERENCES, OBJECTIVES, config, "side_by_side_own_seed.json") is None
    study = search_quality.study_folder(tmp_path, "grown-scratch", 1)
    study.mkdir(parents=True)
    (study / "side_by_side_own_seed.json").write_text(json.dumps(["hungry"]))
    assert search_quality.dominated(tmp_path, row, REFERENCES, OBJECTIVES, config,
                                    "side_by_side_own_seed.json") == ["slow", "hungry"]
    # references of another seed are only read back where the run has them
    with pytest.raises(SystemExit, match="references-seed3.json is missing"):
        search_quality.reference_points(tmp_path, OBJECTIVES, config, None, seed=3)
