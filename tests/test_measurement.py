"""Latency is measured alone and before training: the node's measurement slot keeps training off
the node while a measurement runs, one measurement at a time; measurements are cached per
genotype; a network over a latency, energy or size budget is rejected before it is trained."""

from __future__ import annotations

import json
import multiprocessing
import time

import pytest
import torch

from bitnas.evaluators import TrainingConfig
from bitnas.evaluators.evaluate import EvalRequest, evaluate, measure_before_training
from bitnas.evaluators.measurement import MeasurementCache, MeasurementSlot
from bitnas.evaluators.settings import LatencyConfig
from bitnas.spaces import Genotype, build_model

GENOTYPE = Genotype(input_size=8, in_channels=1, num_classes=10, stem_width=8,
                    stages=[{"block": "binary", "width": 8, "depth": 1}, {"block": "float", "width": 8, "depth": 1}])
FAST_LATENCY = LatencyConfig(runs=30, warmup=1)


def _hold_training_step(directory: str, seconds: float, entered, left) -> None:
    slot = MeasurementSlot(directory)
    with slot.training_step():
        entered.value = time.time()
        time.sleep(seconds)
        left.value = time.time()


def _one_training_step(directory: str, started, entered) -> None:
    slot = MeasurementSlot(directory)
    started.value = time.time()
    with slot.training_step():
        entered.value = time.time()


def _processes():
    return multiprocessing.get_context("spawn")


def test_a_measurement_waits_for_the_training_step_under_way(tmp_path):
    context = _processes()
    entered, left = context.Value("d", 0.0), context.Value("d", 0.0)
    trainer = context.Process(target=_hold_training_step, args=(str(tmp_path), 1.0, entered, left))
    trainer.start()
    deadline = time.time() + 60
    while entered.value == 0.0 and time.time() < deadline:
        time.sleep(0.01)
    assert entered.value, "the trainer never entered its step"
    with MeasurementSlot(tmp_path).measuring():
        measuring_from = time.time()
    trainer.join(60)
    assert measuring_from >= left.value > 0  # the measurement began only after the step had ended


def test_no_training_step_starts_while_a_measurement_runs(tmp_path):
    context = _processes()
    started, entered = context.Value("d", 0.0), context.Value("d", 0.0)
    with MeasurementSlot(tmp_path).measuring():
        trainer = context.Process(target=_one_training_step, args=(str(tmp_path), started, entered))
        trainer.start()
        deadline = time.time() + 60
        while started.value == 0.0 and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)
        assert entered.value == 0.0  # still at the gate
        released = time.time()
    trainer.join(60)
    assert entered.value >= released


def test_a_genotype_is_measured_once_per_node_and_settings(tmp_path):
    request = EvalRequest(dataset="digits", latency=FAST_LATENCY, energy_meter="off")
    slot, cache = MeasurementSlot(tmp_path), MeasurementCache(tmp_path)
    torch.manual_seed(0)
    model = build_model(GENOTYPE)
    first = measure_before_training(model, GENOTYPE, (1, 8, 8), request, slot, cache)
    again = measure_before_training(build_model(GENOTYPE), GENOTYPE, (1, 8, 8), request, slot, cache)
    assert not first["cached"] and again["cached"]
    assert again["latency"] == first["latency"] and first["latency"]["median_ms"] > 0
    assert first["latency"]["measured"].startswith("before training")
    other = EvalRequest(dataset="digits", latency=LatencyConfig(runs=31, warmup=1), energy_meter="off")
    assert not measure_before_training(model, GENOTYPE, (1, 8, 8), other, slot, cache)["cached"]


def test_the_target_compiles_outside_the_slot_and_only_times_inside_it(tmp_path, monkeypatch):
    """The first call of a target's runner compiles (numba, on a cold cache: tens of seconds); it
    must not hold the node's slot, which pauses every other worker's training."""
    from bitnas.evaluators import latency

    events = []
    slot = MeasurementSlot(tmp_path)
    measuring = slot.measuring

    class RecordingSlot:
        def measuring(self):
            events.append("slot taken")
            return measuring()

    real_target = latency.TARGETS["cpu"]

    def recording_target(model, input_shape, threads):
        run, name = real_target(model, input_shape, threads)

        def recorded():
            events.append("run")
            return run()

        return recorded, name

    monkeypatch.setitem(latency.TARGETS, "cpu", recording_target)
    request = EvalRequest(dataset="digits", latency=FAST_LATENCY, energy_meter="off")
    measured = measure_before_training(build_model(GENOTYPE), GENOTYPE, (1, 8, 8), request, RecordingSlot(),
                                       MeasurementCache(tmp_path))
    assert events[0] == "run" and events[1] == "slot taken"  # compiled (one call), then the slot for timing
    assert events.count("run") == 1 + FAST_LATENCY.warmup + FAST_LATENCY.runs
    assert measured["latency"]["runs"] == FAST_LATENCY.runs


def test_a_measurement_leaves_torch_on_the_threads_the_trial_trains_with(tmp_path):
    """Starting numba's OpenMP pool resets the thread count torch shares to every core: a trial that
    measured first then trained on two threads, and rounded differently from one whose latency came
    from the cache (bireal_small: 0.7347 against 0.732 validation accuracy in a default search)."""
    request = EvalRequest(dataset="digits", latency=FAST_LATENCY, energy_meter="off")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        measured = measure_before_training(build_model(GENOTYPE), GENOTYPE, (1, 8, 8), request,
                                           MeasurementSlot(tmp_path), MeasurementCache(tmp_path))
        assert not measured["cached"] and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_measuring_first_leaves_the_training_as_it_was():
    request = EvalRequest(dataset="digits", latency=FAST_LATENCY, energy_meter="off",
                          training=TrainingConfig(epochs=0.2, batch_size=32))
    measured = evaluate(GENOTYPE.to_json(), request)
    unmeasured = evaluate(GENOTYPE.to_json(), request, measure_here=False)
    assert measured.weights == unmeasured.weights  # same initialisation, same steps, same result
    assert measured.metrics["latency_ms"] > 0 and "latency_ms" not in unmeasured.metrics


@pytest.mark.parametrize("limit", ["latency_ms", "size_kb", "energy_uj"])
def test_a_network_over_a_budget_is_rejected_before_training(limit):
    request = EvalRequest(dataset="digits", latency=FAST_LATENCY, energy_meter="off", limits=((limit, 1e-9),),
                          training=TrainingConfig(epochs=0.2, batch_size=32))
    result = evaluate(GENOTYPE.to_json(), request)
    assert result.metrics["train_steps"] == 0 and result.metrics["rejected_before_training"] == 1.0
    assert result.stopped_early and result.rejected and result.rejected[0].startswith(limit)
    assert result.metrics[limit] > 1e-9
    within = EvalRequest(dataset="digits", latency=FAST_LATENCY, energy_meter="off", limits=((limit, 1e9),),
                         training=TrainingConfig(epochs=0.2, batch_size=32))
    trained = evaluate(GENOTYPE.to_json(), within)
    assert trained.metrics["train_steps"] > 0 and not trained.rejected


def test_predict_mode_calibrates_on_the_first_networks_then_predicts_and_says_so(tmp_path, monkeypatch):
    from bitnas.evaluators import predictor

    monkeypatch.setattr(predictor, "CALIBRATION_NETWORKS", 2)
    request = EvalRequest(dataset="digits", latency=LatencyConfig(runs=30, warmup=1, mode="predict"),
                          energy_meter="off")
    cache, slot = MeasurementCache(tmp_path), MeasurementSlot(tmp_path)
    others = [Genotype(input_size=8, in_channels=1, num_classes=10, stem_width=width,
                       stages=[{"block": "binary", "width": width, "depth": 1}]) for width in (8, 16, 24)]
    sources = []
    for genotype in others:
        torch.manual_seed(0)
        latency = measure_before_training(build_model(genotype), genotype, (1, 8, 8), request, slot, cache)["latency"]
        sources.append(latency["source"])
        assert latency["median_ms"] > 0
    assert sources == ["measured", "measured", "predicted"]
    table = json.loads(next((tmp_path / "latency-tables").glob("cpu-*.json")).read_text())
    assert len(table["calibration"]) == 2 and table["entries"]  # the parts, timed once, kept for the node


def test_predict_mode_refuses_what_its_table_cannot_time():
    with pytest.raises(ValueError, match="predict"):
        LatencyConfig(mode="predict", threads=2)
