"""The footprint meter on its own (the searches' footprints are checked in test_end_to_end.py):
a real CodeCarbon measurement that writes nothing into the working directory, a meter that
cannot measure says why instead of raising, and the summary line and settings."""

import os

import pytest

from bitnas.evaluators.footprint import FootprintMeter
from bitnas.search.config import ConfigError, load_config
from bitnas.search.summary import footprint_line


def test_a_meter_measures_real_work_and_writes_nothing_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with FootprintMeter() as meter:
        sum(range(3_000_000))
    footprint = meter.footprint
    assert footprint.energy_wh > 0 and footprint.seconds > 0
    assert footprint.source.startswith("CodeCarbon ") and "CPU " in footprint.source
    assert os.listdir(tmp_path) == []  # no emissions.csv, no lock file


def test_a_meter_that_cannot_measure_says_why_and_never_raises():
    footprint = FootprintMeter().stop()  # never started: nothing to read
    assert footprint.energy_wh == 0 and footprint.source == "unavailable (not started)"
    assert FootprintMeter(enabled=False).stop() is None


def test_the_summary_states_the_total_and_its_source():
    source = "CodeCarbon 3.3.2: CPU measured by the RAPL package counter, RAM estimated from its size"
    total = {"energy_wh": 1.234, "co2_g": 0.586, "grid_intensity_g_per_kwh": 475.0, "runs": 2,
             "source": source, "sources": {source: 5, "unavailable (RuntimeError: x)": 1}}
    assert footprint_line(total) == (
        f"footprint: this search used 1.23 Wh over 2 runs of the driver, about 0.586 g CO2 at 475 g/kWh ({source}; "
        "1 other measurement(s) differ: see the study's footprint_total)")
    assert footprint_line(None) == "footprint: not measured (footprint.enabled is false)"


def test_footprint_settings(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("footprint:\n  enabled: false\n  grid_intensity_g_per_kwh: 56\n")
    config = load_config(path)
    assert not config.footprint.enabled and config.footprint.grid_intensity_g_per_kwh == 56
    path.write_text("footprint:\n  grid_intensity_g_per_kwh: -1\n")
    with pytest.raises(ConfigError, match="footprint.grid_intensity_g_per_kwh"):
        load_config(path)
