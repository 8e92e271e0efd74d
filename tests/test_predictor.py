"""The latency lookup table: parts keyed by configuration, timed once, cached on disk."""

import json

import numpy as np

import pytest
import torch

from bitnas.evaluators.predictor import LatencyTable, error_summary, network_parts, part_key
from bitnas.spaces import Genotype, StageSpec, build_model

NET = Genotype(input_size=12, in_channels=1, num_classes=10, stem_width=8,
               stages=(StageSpec(block="binary", width=8, depth=2, stride=1),
                       StageSpec(block="float", width=16, depth=1, stride=2)))


def test_parts_cover_the_network_and_identical_blocks_share_a_key():
    model = build_model(NET).eval()
    names = [name for name, _ in network_parts(model)]
    assert names == ["stem", "stages.0", "stages.1", "stages.2", "head"]
    parts = dict(network_parts(model))
    # the two binary blocks of stage 0 have the same configuration at the same input shape
    assert part_key(parts["stages.0"], (8, 12, 12)) == part_key(parts["stages.1"], (8, 12, 12))
    assert part_key(parts["stages.0"], (8, 12, 12)) != part_key(parts["stages.0"], (8, 6, 6))
    assert part_key(parts["stages.0"], (8, 12, 12)) != part_key(parts["stages.2"], (8, 12, 12))


@pytest.mark.parametrize("target", ["cpu", "torch-cpu"])
def test_prediction_sums_parts_timed_once_and_cached(tmp_path, target):
    torch.manual_seed(0)
    table = LatencyTable.for_target(tmp_path, target)
    predicted = table.predict(build_model(NET), (1, 12, 12))
    assert predicted > 0
    assert table.timed_now == 4  # stem, one binary block (shared by two), the float block, the head
    assert predicted == pytest.approx(sum(table.entries[k] for k in table.entries) + table.entries[
        part_key(dict(network_parts(build_model(NET).eval()))["stages.0"], (8, 12, 12))])
    stored = json.loads(table.path.read_text())
    assert stored["target"] == target and len(stored["entries"]) == 4

    again = LatencyTable.for_target(tmp_path, target)
    assert again.predict(build_model(NET), (1, 12, 12)) == pytest.approx(predicted)
    assert again.timed_now == 0  # everything came from the file


def test_error_summary_by_hand():
    summary = error_summary(measured=[1.0, 2.0, 4.0, 10.0], predicted=[1.05, 2.5, 4.0, 8.0])
    assert summary == pytest.approx({"within_10pct": 0.5, "mape": (0.05 + 0.25 + 0 + 0.2) / 4, "n": 4})


def test_the_correction_is_the_least_squares_fit_of_the_calibration_networks(tmp_path):
    from bitnas.evaluators.predictor import CALIBRATION_NETWORKS

    table = LatencyTable.for_target(tmp_path, "cpu")
    assert table.corrected(2.0, 5) == 2.0  # uncalibrated: the plain sum
    # networks whose end-to-end time is 1.1 x their parts + 0.02 ms per step + 0.05 ms
    steps = np.random.default_rng(0).integers(3, 30, CALIBRATION_NETWORKS)
    table.calibration = [(p, float(s), 1.1 * p + 0.02 * s + 0.05)
                         for p, s in zip(np.linspace(0.5, 4, CALIBRATION_NETWORKS), steps)]
    assert table.corrected(2.0, 5) == pytest.approx(1.1 * 2.0 + 0.02 * 5 + 0.05)
