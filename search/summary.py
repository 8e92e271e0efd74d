"""What a finished search prints: the Pareto table, the references beside it, where latency and
energy came from (as measured, not as configured), and the commands that come next."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import optuna
import pandas as pd
from optuna.trial import TrialState

from bitnas.evaluators.settings import LATENCY_TARGET_DESCRIPTIONS

from bitnas.redact import redact_url

from .config import SearchConfig
from .importance import importance_lines
from .objectives import Objective
from .report import format_table, reference_lines
from .tracking import ui_command


@dataclass
class SearchOutcome:
    study: str
    completed: int
    failed_this_run: int
    interrupted: bool
    frame: pd.DataFrame
    hypervolume: float
    seconds: float
    objectives: list[Objective] = field(default_factory=list)
    storage: str = ""
    references: pd.DataFrame = field(default_factory=pd.DataFrame)
    energy_sources: dict[str, int] = field(default_factory=dict)  # source -> completed trials it measured
    importances: pd.DataFrame = field(default_factory=pd.DataFrame)  # search/importance.py
    accuracy_floor: float | None = None  # validation accuracy a trial must reach (search/constraints.py)
    footprint: dict | None = None  # the study's footprint_total (search/footprint.py); None when not measured


def energy_sources(study: optuna.Study) -> dict[str, int]:
    """How many completed trials each energy source gave (RAPL, NVML, or an analytic profile)."""
    counts = Counter(str(t.user_attrs.get("energy_source", "unknown"))
                     for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    return dict(counts.most_common())


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _energy_line(sources: dict[str, int], total: int) -> str:
    if not sources:
        return "energy: no completed trial"
    if len(sources) == 1:
        return f"energy: {next(iter(sources))}"
    return "energy: " + "; ".join(f"{source} ({count} of {total} trials)" for source, count in sources.items())


def _floor_line(outcome: SearchOutcome, config: SearchConfig) -> list[str]:
    if outcome.accuracy_floor is None:
        return []
    under = int(outcome.frame["violates"].str.contains("accuracy_floor", regex=False).sum()) if len(outcome.frame) else 0
    return [f"accuracy floor: {outcome.accuracy_floor:.3f} validation accuracy (chance + "
            f"{config.constraints.accuracy_floor:.0%} of the way to 1; constraints.accuracy_floor); "
            f"{under} trial(s) under it kept off the front"]


def footprint_line(total: dict | None) -> str:
    """What the search itself used, and how that was measured, said as CodeCarbon reported it."""
    if total is None:
        return "footprint: not measured (footprint.enabled is false)"
    runs = f" over {total['runs']} runs of the driver" if total.get("runs", 1) > 1 else ""
    others = sum(total["sources"].values()) - total["sources"].get(total["source"], 0)
    also = f"; {others} other measurement(s) differ: see the study's footprint_total" if others else ""
    return (f"footprint: this search used {total['energy_wh']:.3g} Wh{runs}, about {total['co2_g']:.3g} g CO2 at "
            f"{total['grid_intensity_g_per_kwh']:g} g/kWh ({total['source'] or 'nothing measured'}{also})")


def summary_text(outcome: SearchOutcome, config: SearchConfig) -> str:
    results = config.results_dir
    storage_flag = f" --storage {outcome.storage}" if config.storage else ""
    target = config.latency.target
    lines = [
        "",
        f"Pareto front of study {outcome.study!r} ({int(outcome.frame['pareto'].sum())} of {len(outcome.frame)} "
        f"completed trials; hypervolume {outcome.hypervolume:.4g}; {format_duration(outcome.seconds)} wall time):",
        format_table(outcome.frame, outcome.objectives),
        "",
        *reference_lines(outcome.references, outcome.objectives),
        *_floor_line(outcome, config),
        f"latency: {LATENCY_TARGET_DESCRIPTIONS.get(target, target)}, batch 1, {config.latency.threads} thread(s), "
        + ("predicted from a per-node table of timed parts (latency.mode: predict)" if config.latency.mode == "predict"
           else "measured before training, alone in each node's measurement slot"),
        _energy_line(outcome.energy_sources, sum(outcome.energy_sources.values())),
        *importance_lines(outcome.importances, outcome.objectives),
        footprint_line(outcome.footprint),
        (f"open the MLflow UI:  {redact_url(config.tracking_uri)} (the tracking server this search logged to)"
         if config.tracking_uri else f"open the MLflow UI:  {ui_command(results)}"),
        f"export the front:    bitnas export --study {outcome.study} --results {results}{storage_flag}",
    ]
    return "\n".join(lines)
