"""The energy a piece of bitnas's own work used: one trial on its Ray worker, or the driver's own
bookkeeping between two checkpoints. Measured with CodeCarbon's offline tracker (no network: no
API, no file written; it reads RAPL where readable and estimates from the CPU otherwise).

What one meter counts: CodeCarbon measures the *machine* (tracking_mode="machine": the RAPL
package counter, or CPU load x TDP, plus its RAM estimate and any GPU it finds), and the process
is charged the share of the machine's busy CPU time that it used itself (its own user + system
time, not its children's). So the trials running side by side on one node and the driver next to
them split the machine between them instead of each counting all of it, and the driver, whose
children are the local Ray's processes, does not count the trials a second time. The shares sum
to at most the machine's energy; other users' processes on the machine keep theirs.

A meter never fails the work it measures: anything that goes wrong becomes a footprint of 0 Wh
whose source says `unavailable (<reason>)`.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass

# How often CodeCarbon's scheduler folds power into energy. `stop()` always measures the last
# stretch, so a trial shorter than this costs one reading at start and one at stop; 30 s keeps the
# background work negligible on a loaded core and a RAPL delta far from the counter's wrap-around.
# (CodeCarbon's own 1-second power sampler runs regardless: a few psutil reads.)
MEASURE_POWER_SECS = 30.0

# The names CodeCarbon gives its CPU tracking modes (codecarbon/external/hardware.py, CPU._mode),
# as the footprint's source says them.
_CPU_MODES = {
    "intel_rapl": "CPU measured by the RAPL package counter",
    "windows_emi": "CPU measured by the Windows Energy Meter (RAPL)",
    "intel_power_gadget": "CPU measured by Intel Power Gadget",
    "apple_powermetrics": "CPU measured by powermetrics",
}


@dataclass(frozen=True)
class Footprint:
    energy_wh: float   # this process's share of the machine's energy over `seconds`
    seconds: float
    source: str        # how CodeCarbon measured it, or `unavailable (<reason>)`

    def as_dict(self) -> dict:
        return asdict(self)


def _own_cpu_seconds() -> float:
    import psutil

    times = psutil.Process().cpu_times()
    return times.user + times.system


def _machine_busy_cpu_seconds() -> float:
    """CPU time the whole machine spent busy, over all cores (idle, I/O wait and time stolen by a
    hypervisor left out; guest time is already inside user time on Linux)."""
    import psutil

    times = psutil.cpu_times()
    return sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq"))


def _describe(tracker) -> str:
    """How CodeCarbon measured, from the hardware objects it set up (`CPU._mode`, `_tdp`)."""
    import codecarbon

    parts = []
    order = {"CPU": 0, "GPU": 1, "RAM": 2}
    for hardware in sorted(getattr(tracker, "_hardware", []), key=lambda h: order.get(type(h).__name__, 3)):
        kind = type(hardware).__name__
        if kind == "CPU":
            mode = getattr(hardware, "_mode", "?")
            if mode in _CPU_MODES:
                parts.append(_CPU_MODES[mode])
            else:  # cpu_load / constant: an estimate; the TDP it assumed is shown to be judged
                model, tdp = getattr(hardware, "_model", None) or "unknown CPU", getattr(hardware, "_tdp", None)
                how = "load x TDP" if mode == "cpu_load" else "a constant share of TDP"
                parts.append(f"CPU estimated from {how} ({model}, {tdp:g} W)" if isinstance(tdp, (int, float))
                             else f"CPU estimated from {how} ({model})")
                parts[-1] += ": RAPL not readable" if _linux() else ": no CPU energy counter readable"
        elif kind == "GPU":
            parts.append("GPU measured by its driver (NVML / AMD SMI)")
        elif kind == "RAM":
            parts.append("RAM estimated from its size")
        else:
            parts.append(f"{kind} measured")
    return f"CodeCarbon {codecarbon.__version__}: " + ", ".join(parts or ["no hardware found"])


def _linux() -> bool:
    import sys

    return sys.platform.startswith("linux")


def _new_tracker():
    from codecarbon import OfflineEmissionsTracker

    # After the import (which sets its logger to INFO) and before the constructor, which logs at
    # INFO and WARNING before it applies `log_level`.
    logging.getLogger("codecarbon").setLevel(logging.ERROR)

    return OfflineEmissionsTracker(
        tracking_mode="machine", measure_power_secs=MEASURE_POWER_SECS,
        # Nothing written or sent anywhere: no CSV, no API, no HTTP endpoint (arguments given here
        # win over a user's .codecarbon.config). `output_dir` only matters to the outputs and the
        # Power Gadget log, so it is the temp directory, never the working directory.
        output_methods=[], emissions_endpoint=None, output_dir=tempfile.gettempdir(),
        # bitnas computes CO2 itself from `footprint.grid_intensity_g_per_kwh`; a forced intensity
        # keeps CodeCarbon from looking up a country's grid (and from any Electricity Maps token).
        force_carbon_intensity_g_co2e_kwh=0.0, electricitymaps_api_token=None,
        # Several meters run at once on one machine (the workers, the driver): no lock file.
        allow_multiple_runs=True, log_level="error")


class FootprintMeter:
    """`with FootprintMeter() as meter: work()` then `meter.footprint`; or `start()` / `stop()`.
    `enabled=False` measures nothing and leaves `footprint` None.

    The first meter of a process pays CodeCarbon's hardware detection (py-cpuinfo and its TDP
    table, 2-3 s of CPU here); CodeCarbon caches it for the process, so later meters start and
    stop in about 10 ms (a Ray worker runs many trials)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.footprint: Footprint | None = None
        self._tracker = None
        self._problem = ""
        self._started = self._own = self._machine = 0.0
        self.running = False  # started and not yet stopped

    def start(self) -> None:
        if not self.enabled:
            return
        self._problem, self.running = "", True
        self._started = time.perf_counter()
        try:
            self._tracker = _new_tracker()
            self._tracker.start()
            # From here, where CodeCarbon's energy starts: the share and the seconds cover the same
            # stretch (the hardware detection before it, the meter's own cost, is not counted).
            self._started = time.perf_counter()
            self._own, self._machine = _own_cpu_seconds(), _machine_busy_cpu_seconds()
        except Exception as error:  # noqa: BLE001 - a meter must never fail the work it measures
            self._tracker, self._problem = None, _reason(error)

    def stop(self) -> Footprint | None:
        if not self.enabled:
            return None
        if not self.running:
            self._problem = self._problem or "not started"
        self.running = False
        seconds = time.perf_counter() - self._started if self._started else 0.0
        if self._tracker is None:
            self.footprint = Footprint(0.0, seconds, f"unavailable ({self._problem})")
            return self.footprint
        try:
            self._tracker.stop()  # CodeCarbon swallows its own errors: then there is no data
            data = getattr(self._tracker, "final_emissions_data", None)
            if data is None:
                raise RuntimeError("CodeCarbon recorded nothing")
            own = _own_cpu_seconds() - self._own
            machine = _machine_busy_cpu_seconds() - self._machine
            # Clock ticks are coarse: a share just over 1 (or a machine that looked idle) is all of it.
            share = min(1.0, own / machine) if machine > 0 else (1.0 if own > 0 else 0.0)
            self.footprint = Footprint(float(data.energy_consumed) * 1000.0 * share, seconds, _describe(self._tracker))
        except Exception as error:  # noqa: BLE001 - recorded as the source instead
            self.footprint = Footprint(0.0, seconds, f"unavailable ({_reason(error)})")
        finally:
            self._tracker = None
        return self.footprint

    def __enter__(self) -> FootprintMeter:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}"[:300] if text else type(error).__name__
