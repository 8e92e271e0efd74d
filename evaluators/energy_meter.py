"""Measured energy where the hardware has a meter: Linux powercap (RAPL) package counters.

A RAPL zone (`/sys/class/powercap/intel-rapl:N`, also used for AMD packages) exposes `name`
(`package-N`), `energy_uj` (a counter in microjoules that wraps at `max_energy_range_uj`). The
counter covers the whole package, other processes included, so a measurement is only as clean as
the machine is quiet; the source string says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

POWERCAP = Path("/sys/class/powercap")


@dataclass(frozen=True)
class RaplZone:
    path: Path
    name: str
    max_range_uj: int

    def read_uj(self) -> int:
        return int((self.path / "energy_uj").read_text().strip())


@dataclass(frozen=True)
class EnergyMeasurement:
    per_inference_uj: float
    runs: int
    seconds: float
    source: str


class RaplMeter:
    """Sums the package zones' counters; `find()` returns None where none is readable."""

    def __init__(self, zones: list[RaplZone]):
        self.zones = zones

    @classmethod
    def find(cls, root: Path = POWERCAP) -> RaplMeter | None:
        zones = []
        for zone in sorted(root.glob("*-rapl:*")) if root.is_dir() else []:
            if zone.name.count(":") != 1:  # sub-zones (core, dram) are inside their package's count
                continue
            try:
                name = (zone / "name").read_text().strip()
                if not name.startswith("package"):
                    continue
                candidate = RaplZone(zone, name, int((zone / "max_energy_range_uj").read_text().strip()))
                candidate.read_uj()
            except (OSError, ValueError):
                continue
            zones.append(candidate)
        return cls(zones) if zones else None

    def read(self) -> list[int]:
        return [zone.read_uj() for zone in self.zones]

    def elapsed_uj(self, before: list[int], after: list[int]) -> int:
        total = 0
        for zone, start, end in zip(self.zones, before, after):
            total += end - start if end >= start else end + zone.max_range_uj - start  # the counter wrapped
        return total

    def measure(self, run: Callable[[], object], runs: int) -> EnergyMeasurement:
        """Energy per call of `run`, over `runs` calls."""
        if runs < 1:
            raise ValueError("runs must be >= 1")
        before, started = self.read(), time.perf_counter()
        for _ in range(runs):
            run()
        seconds, after = time.perf_counter() - started, self.read()
        names = "+".join(zone.name for zone in self.zones)
        return EnergyMeasurement(self.elapsed_uj(before, after) / runs, runs, seconds,
                                 f"measured:rapl {names} (whole package, {runs} runs)")
