"""The RAPL reader on a fake powercap tree laid out as the kernel lays it out, and the NVML
reader on a stand-in for the NVIDIA driver (no GPU here)."""

import sys
from pathlib import Path

import pytest

from bitnas.evaluators.energy_meter import RaplMeter


def zone(root: Path, name: str, label: str, energy: int, max_range: int = 1_000_000) -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "name").write_text(label + "\n")
    (path / "energy_uj").write_text(f"{energy}\n")
    (path / "max_energy_range_uj").write_text(f"{max_range}\n")
    return path


def test_packages_are_found_and_subzones_ignored(tmp_path):
    zone(tmp_path, "intel-rapl:0", "package-0", 100)
    zone(tmp_path, "intel-rapl:0:0", "core", 50)
    zone(tmp_path, "intel-rapl:1", "package-1", 200)
    zone(tmp_path, "intel-rapl:2", "psys", 10)
    meter = RaplMeter.find(tmp_path)
    assert [z.name for z in meter.zones] == ["package-0", "package-1"]
    assert meter.read() == [100, 200]


def test_no_readable_counter_means_no_meter(tmp_path):
    assert RaplMeter.find(tmp_path / "absent") is None
    broken = zone(tmp_path, "intel-rapl:0", "package-0", 0)
    (broken / "energy_uj").write_text("not a number\n")
    assert RaplMeter.find(tmp_path) is None


def test_energy_per_run_counts_across_a_wrap(tmp_path):
    counter = zone(tmp_path, "intel-rapl:0", "package-0", 999_000, max_range=1_000_000) / "energy_uj"
    meter = RaplMeter.find(tmp_path)

    def run():  # each call "uses" 600 uJ, as the kernel's counter would show it
        value = int(counter.read_text()) + 600
        counter.write_text(f"{value % 1_000_000}\n")

    measurement = meter.measure(run, runs=5)  # 999000 -> 2000: wraps once
    assert measurement.per_inference_uj == pytest.approx(600)
    assert measurement.source.startswith("measured:rapl package-0")


class FakeNvml:
    """NVML as the driver presents it through pynvml: GPUs by index and UUID, a millijoule counter
    per GPU, and NVMLError (NotSupported on GPUs older than Volta). No GPU is on this machine."""

    class NVMLError(Exception):
        pass

    def __init__(self, gpus: dict[str, int | None]):
        self.counters = dict(gpus)  # uuid -> millijoules, None: the GPU has no energy counter
        self.order = list(gpus)

    def nvmlInit(self):
        pass

    def nvmlDeviceGetHandleByIndex(self, index):
        return self.order[index]

    def nvmlDeviceGetHandleByUUID(self, uuid):
        if uuid not in self.counters:
            raise self.NVMLError("Not Found")
        return uuid

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if self.counters[handle] is None:
            raise self.NVMLError("Not Supported")
        return self.counters[handle]

    def nvmlDeviceGetName(self, handle):
        return f"Fake GPU {self.order.index(handle)}".encode()


def test_nvml_meter_measures_the_gpu_torch_uses_by_uuid(monkeypatch):
    from bitnas.evaluators.energy_meter import NvmlMeter

    nvml = FakeNvml({"GPU-aaaa": 1_000, "GPU-bbbb": 5_000})
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    meter = NvmlMeter.find("bbbb")  # torch's uuid carries no "GPU-" prefix
    assert meter.name == "Fake GPU 1"

    def run():  # each inference: 3 mJ on this GPU, and something else busy on the other one
        nvml.counters["GPU-bbbb"] += 3
        nvml.counters["GPU-aaaa"] += 100

    measurement = meter.measure(run, runs=10, min_seconds=0.05)
    assert measurement.runs >= 10
    assert measurement.per_inference_uj == pytest.approx(3_000)
    assert measurement.source.startswith("measured:nvml Fake GPU 1 (whole GPU,")


def test_no_nvml_counter_means_no_meter(monkeypatch):
    from bitnas.evaluators.energy_meter import NvmlMeter

    monkeypatch.setitem(sys.modules, "pynvml", None)  # package not installed
    assert NvmlMeter.find() is None
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml({"GPU-old": None}))  # before Volta
    assert NvmlMeter.find("old") is None
