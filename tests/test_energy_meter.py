"""The RAPL reader on a fake powercap tree laid out as the kernel lays it out."""

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
