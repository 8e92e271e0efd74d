"""Which trials an export takes: the Pareto front (default), one trial by number, or the best
trial by a metric among those within budgets (`--max-latency-ms 2 --best accuracy`).

Only completed, feasible trials (within the study's own constraints) are candidates for the front
and for `--best`; `--trial N` takes any completed trial, because the user named it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from bitnas.errors import UserError
from bitnas.search.studies import StudyArchive

# --best METRIC: the column of trials_frame it reads, and which way is better.
BEST_METRICS = {"accuracy": ("accuracy", False), "latency_ms": ("latency_ms", True), "energy_uj": ("energy_uj", True),
                "size_kb": ("size_kb", True), "ops": ("ops", True), "params": ("params", True)}
# Budget flags: flag name -> (metric column, "max" or "min").
BUDGETS = {"max_latency_ms": ("latency_ms", "max"), "max_energy_uj": ("energy_uj", "max"),
           "max_size_kb": ("size_kb", "max"), "min_accuracy": ("accuracy", "min")}


class SelectionError(UserError):
    """A selection that matches no trial, or names something that does not exist."""


@dataclass(frozen=True)
class Selection:
    trial: int | None = None
    best: str | None = None
    budgets: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        if self.trial is not None:
            return f"trial {self.trial}"
        limits = ", ".join(f"{k} {v:g}" for k, v in self.budgets.items())
        if self.best:
            return f"best {self.best}" + (f" within {limits}" if limits else "")
        return "the Pareto front" + (f" within {limits}" if limits else "")


def _frame(study: StudyArchive) -> pd.DataFrame:
    frame = study.frame.copy()
    metrics = {number: t.user_attrs.get("metrics", {}) for number, t in study.trials().items()}
    # Objectives are columns already; a budget or --best on a metric that is not an objective reads
    # the trial's recorded metrics.
    for column, metric in (("accuracy", "val_accuracy"), ("latency_ms", "latency_ms"), ("energy_uj", "energy_uj"),
                           ("size_kb", "size_kb"), ("ops", "ops"), ("params", "params")):
        if column not in frame.columns or frame[column].isna().any():
            frame[column] = [metrics.get(int(n), {}).get(metric, float("nan")) for n in frame["trial"]]
    return frame


def select_trials(study: StudyArchive, selection: Selection) -> list:
    """The chosen trials (Optuna FrozenTrials) of the study."""
    trials = study.trials()
    if selection.trial is not None:
        if selection.trial not in trials:
            raise SelectionError(f"study {study.name!r} has no trial {selection.trial} "
                                 f"(it has trials 0-{len(trials) - 1})")
        trial = trials[selection.trial]
        if trial.state.name != "COMPLETE":
            raise SelectionError(f"trial {selection.trial} of study {study.name!r} is {trial.state.name}, "
                                 "not COMPLETE")
        return [trial]
    if selection.best is not None and selection.best not in BEST_METRICS:
        raise SelectionError(f"--best: unknown metric {selection.best!r}; known: {', '.join(BEST_METRICS)}")
    frame = _frame(study)
    if frame.empty:
        raise SelectionError(f"study {study.name!r} has no completed trials to export")
    candidates = frame[frame["feasible"] & frame["duplicate_of"].isna()]
    for name, limit in selection.budgets.items():
        column, kind = BUDGETS[name]
        candidates = candidates[candidates[column] <= limit] if kind == "max" else candidates[candidates[column] >= limit]
    if selection.best is None:
        # The front, then the budgets: the budgets only narrow which front members are taken.
        candidates = candidates[candidates["pareto"]]
    if candidates.empty:
        raise SelectionError(f"no completed trial of study {study.name!r} matches {selection.describe()}")
    if selection.best is not None:
        column, ascending = BEST_METRICS[selection.best]
        candidates = candidates.sort_values([column, "trial"], ascending=[ascending, True]).head(1)
    return [trials[int(n)] for n in candidates["trial"]]
