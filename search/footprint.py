"""What a study's search has cost in energy, kept with the study across resumes.

Counted, and nothing twice (evaluators/footprint.py says how one meter shares out a machine):
- each evaluated trial and reference architecture: its own meter on its Ray worker, kept on the
  trial (user attribute `footprint`) or the reference (`reference:<name>`). A duplicate trial
  reuses a result and costs nothing new (0 Wh). A trial that fails returns no result, so its
  energy is not counted;
- the driver process itself (asking, telling, MLflow, the views): one meter in the driver, read
  at each checkpoint and added to `driver_wh`, which every run of the driver continues.

The study total (user attribute `footprint_total`) is the trials' and references' footprints as
recorded on them, plus `driver_wh`. It is rewritten at each checkpoint, so a crash loses at most
the driver's energy since the last one; the trials' part is read back from the trials on resume.
"""

from __future__ import annotations

import time
from collections import Counter

import optuna
from optuna.trial import TrialState

from bitnas.evaluators.footprint import FootprintMeter

from .config import SearchConfig
from .references import recorded_references
from .tracking import StudyTracker

TRIAL_ATTR, TOTAL_ATTR = "footprint", "footprint_total"
# The driver's meter is read (and the total written) at most this often while trials finish; the
# last interval is read when the run ends.
CHECKPOINT_SECONDS = 10.0


def record(measured: dict | None, intensity_g_per_kwh: float) -> dict | None:
    """A worker's Footprint (as a dict) with its CO2 at the configured grid intensity."""
    if not measured:
        return None
    return {"energy_wh": float(measured["energy_wh"]),
            "co2_g": float(measured["energy_wh"]) * intensity_g_per_kwh / 1000.0,
            "source": str(measured["source"]), "seconds": float(measured["seconds"])}


def duplicate_record(original: int) -> dict:
    return {"energy_wh": 0.0, "co2_g": 0.0, "source": f"reused the result of trial {original}: nothing evaluated",
            "seconds": 0.0, "reused_from": original}


def run_metrics(footprint: dict | None) -> dict[str, float]:
    """The MLflow metrics of a trial's or reference's run."""
    if not footprint:
        return {}
    return {"footprint_energy_wh": footprint["energy_wh"], "footprint_co2_g": footprint["co2_g"],
            "footprint_seconds": footprint["seconds"]}


class StudyFootprint:
    """The running total of one study, for one run of the driver."""

    def __init__(self, study: optuna.Study, tracker: StudyTracker, config: SearchConfig):
        self.study, self.tracker = study, tracker
        self.enabled = config.footprint.enabled
        self.intensity = config.footprint.grid_intensity_g_per_kwh
        previous = study.user_attrs.get(TOTAL_ATTR) or {}
        self.driver_wh = float(previous.get("driver_wh", 0.0))   # every earlier run of the driver
        self.driver_seconds = float(previous.get("driver_seconds", 0.0))
        self.runs = int(previous.get("runs", 0)) + (1 if self.enabled else 0)
        self.driver_source = ""
        self.sources: Counter[str] = Counter()
        self.trials_wh = self.references_wh = 0.0
        self.measured = 0
        # The trials' and references' part from what is recorded on them: never lost by a crash.
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        for trial in completed:
            self._count(trial.user_attrs.get(TRIAL_ATTR), "trial")
        self.step = len(completed)  # the MLflow step of the last checkpoint: completed trials
        for reference in recorded_references(study).values():
            self._count(reference.get(TRIAL_ATTR), "reference")
        self.meter = FootprintMeter(self.enabled)
        self.meter.start()
        self._last = time.monotonic()

    def _count(self, footprint: dict | None, kind: str) -> None:
        if not footprint or "reused_from" in footprint:  # a duplicate: nothing measured
            return
        if kind == "trial":
            self.trials_wh += footprint["energy_wh"]
        else:
            self.references_wh += footprint["energy_wh"]
        self.measured += 1
        self.sources[footprint["source"]] += 1

    def record(self, measured: dict | None) -> dict | None:
        """The record of a trial's footprint just returned by its worker (None when not measured)."""
        return record(measured, self.intensity) if self.enabled else None

    def add(self, footprint: dict | None, kind: str = "trial") -> None:
        """Count a trial's or reference's footprint once it is recorded on it."""
        if self.enabled:
            self._count(footprint, kind)

    def checkpoint(self, step: int, *, final: bool = False) -> None:
        """Read the driver's meter (at most every CHECKPOINT_SECONDS unless `final`), write the
        total to the study and log it on the study's MLflow run."""
        if not self.meter.running or (not final and time.monotonic() - self._last < CHECKPOINT_SECONDS):
            return
        self.step = step
        driver = self.meter.stop()
        if driver is not None:
            self.driver_wh += driver.energy_wh
            self.driver_seconds += driver.seconds
            self.driver_source = driver.source
        if not final:
            self.meter.start()
        self._last = time.monotonic()
        total = self.total()
        self.study.set_user_attr(TOTAL_ATTR, total)
        self.tracker.log_footprint({"footprint_energy_wh": total["energy_wh"], "footprint_co2_g": total["co2_g"],
                                    "footprint_trials_wh": total["trials_wh"],
                                    "footprint_references_wh": total["references_wh"],
                                    "footprint_driver_wh": total["driver_wh"]}, step=step,
                                   source=total["source"])

    def close(self) -> None:
        """At the end of a run that stopped before its final checkpoint (an error on the way): read
        the driver's last interval if that still works, and never raise over the error itself."""
        try:
            self.checkpoint(self.step, final=True)
        except Exception:  # noqa: BLE001 - the run's own error is what gets reported
            self.meter.stop()

    def total(self) -> dict:
        energy = self.trials_wh + self.references_wh + self.driver_wh
        sources = self.sources.copy()
        if self.driver_source:
            sources[self.driver_source] += 1
        return {"energy_wh": energy, "co2_g": energy * self.intensity / 1000.0,
                "grid_intensity_g_per_kwh": self.intensity, "trials_wh": self.trials_wh,
                "references_wh": self.references_wh, "driver_wh": self.driver_wh,
                "driver_seconds": self.driver_seconds, "measured": self.measured, "runs": self.runs,
                # the most common first; the summary states the first and counts the others
                "source": sources.most_common(1)[0][0] if sources else "",
                "sources": dict(sources.most_common())}
