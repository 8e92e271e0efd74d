"""Measured energy where the hardware has a meter: Linux powercap (RAPL) package counters for
CPUs, and NVML's total-energy counter for NVIDIA GPUs (Volta and later).

A RAPL zone (`/sys/class/powercap/intel-rapl:N`, also used for AMD packages) exposes `name`
(`package-N`), `energy_uj` (a counter in microjoules that wraps at `max_energy_range_uj`). The
counter covers the whole package, other processes included, so a measurement is only as clean as
the machine is quiet; the source string says so. NVML's counter (millijoules since the driver
loaded) covers the whole GPU and is refreshed every few tens of milliseconds, so a GPU measurement
runs for at least a second.
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


class NvmlMeter:
    """The GPU's own energy counter through NVML (`pip install nvidia-ml-py`, imported as pynvml);
    `find()` returns None where the package, the driver or the counter is missing."""

    def __init__(self, nvml, handle, name: str):
        self.nvml, self.handle, self.name = nvml, handle, name

    @classmethod
    def find(cls, uuid: str | None = None) -> NvmlMeter | None:
        """The GPU with this UUID (torch's `get_device_properties(i).uuid`), else NVML's first;
        CUDA and NVML may number GPUs differently, the UUID is the same in both."""
        try:
            import pynvml
        except ImportError:
            return None
        try:
            pynvml.nvmlInit()
            handle = None
            if uuid:
                try:
                    handle = pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
                except pynvml.NVMLError:
                    handle = None
            handle = handle or pynvml.nvmlDeviceGetHandleByIndex(0)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # raises NotSupported before Volta
            name = pynvml.nvmlDeviceGetName(handle)
        except pynvml.NVMLError:
            return None
        return cls(pynvml, handle, name.decode() if isinstance(name, bytes) else str(name))

    def read_mj(self) -> int:
        return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))

    def measure(self, run: Callable[[], object], runs: int, *, min_seconds: float = 1.0) -> EnergyMeasurement:
        """Energy per call of `run` (which must wait for the GPU), over at least `runs` calls and
        `min_seconds`."""
        if runs < 1:
            raise ValueError("runs must be >= 1")
        before, started, count = self.read_mj(), time.perf_counter(), 0
        while count < runs or time.perf_counter() - started < min_seconds:
            run()
            count += 1
        seconds, after = time.perf_counter() - started, self.read_mj()
        return EnergyMeasurement((after - before) * 1000.0 / count, count, seconds,
                                 f"measured:nvml {self.name} (whole GPU, {count} runs)")
