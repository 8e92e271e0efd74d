"""Latency targets: the packed engine by default, torch and onnxruntime on request, clear errors."""

from __future__ import annotations

import pytest
import torch

from bitnas.evaluators import LatencyConfig, measure_latency
from bitnas.evaluators.engine import ENGINE_NAME
from bitnas.evaluators.latency import TARGETS, LatencyTargetError
from bitnas.spaces import Genotype, build_model

NET = Genotype(input_size=8, in_channels=1, num_classes=3, stem_width=8,
               stages=[{"block": "binary", "width": 16, "depth": 2}, {"block": "float", "width": 8, "depth": 1}])


def test_default_target_is_the_packed_engine_and_records_its_environment():
    measurement = measure_latency(build_model(NET), (1, 8, 8), LatencyConfig(runs=50, warmup=2, threads=1))
    assert measurement.target == "cpu" and measurement.engine == ENGINE_NAME
    assert measurement.runs == 50 and 0 < measurement.min_ms <= measurement.median_ms <= measurement.p90_ms
    environment = measurement.as_dict()["environment"]
    assert environment["threads"] == 1 and environment["engine"] == ENGINE_NAME
    assert {"cpu", "cpu_flags", "cpu_affinity", "versions", "host"} <= set(environment)
    assert {"numba", "torch", "numpy"} <= set(environment["versions"])


@pytest.mark.parametrize("target", ["torch-cpu", "onnxruntime"])
def test_simulating_targets_say_that_binary_layers_are_simulated(target):
    model = build_model(NET)
    measurement = measure_latency(model, (1, 8, 8), LatencyConfig(runs=30, warmup=1, target=target))
    assert measurement.target == target and "simulated" in measurement.engine
    assert model.training  # measuring leaves the model as it found it


def test_blocks_the_engine_cannot_pack_are_named_in_the_engine_string():
    model = build_model(NET)
    model.stages.append(torch.nn.Hardtanh())
    measurement = measure_latency(model, (1, 8, 8), LatencyConfig(runs=30, warmup=1))
    assert "in torch: stages.3 (no engine compiler for Hardtanh)" in measurement.engine


def test_unknown_target_is_refused_naming_the_known_ones():
    # Refused where the settings are made (the config check turns this into one line), before any model.
    with pytest.raises(ValueError, match="Input should be 'cpu', 'torch-cpu', 'torch-cuda' or 'onnxruntime'"):
        LatencyConfig(target="tpu")
    assert {"cpu", "torch-cpu", "torch-cuda", "onnxruntime"} <= set(TARGETS)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_cuda_target_without_a_device_says_so():
    with pytest.raises(LatencyTargetError, match="needs a CUDA device"):
        measure_latency(build_model(NET), (1, 8, 8), LatencyConfig(target="torch-cuda"))


def test_one_thread_measurements_are_pinned_and_the_affinity_restored():
    import os

    from bitnas.evaluators import LatencyConfig, measure_latency
    from bitnas.spaces import Genotype, StageSpec, build_model

    before = os.sched_getaffinity(0)
    genotype = Genotype(input_size=8, in_channels=1, num_classes=10, stem_width=8,
                        stages=(StageSpec(block="binary", width=16, depth=1, stride=2),))
    measurement = measure_latency(build_model(genotype), (1, 8, 8), LatencyConfig(runs=30, warmup=0, threads=1))
    assert measurement.environment["pinned_cpu"] in before
    assert os.sched_getaffinity(0) == before
