"""The study as a table: one row per completed trial, its objectives, costs and Pareto membership."""

from __future__ import annotations

import pandas as pd
import optuna

from .objectives import Objective
from .pareto import hypervolume, pareto_indices

# Columns shown after the objectives, when the trial has them.
COST_COLUMNS = ["params", "size_kb", "ops", "bops", "flops"]


def trials_frame(study: optuna.Study, objectives: list[Objective]) -> pd.DataFrame:
    """Completed trials, best-first by the first objective, with a boolean `pareto` column."""
    rows = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        metrics = trial.user_attrs.get("metrics", {})
        row = {"trial": trial.number, "genotype": trial.user_attrs.get("genotype_short", "")}
        row.update({o.name: value for o, value in zip(objectives, trial.values)})
        row.update({c: metrics[c] for c in COST_COLUMNS if c in metrics})
        rows.append(row)
    columns = ["trial", *[o.name for o in objectives], *COST_COLUMNS, "genotype"]
    frame = pd.DataFrame(rows, columns=columns)
    vectors = [[o.minimised(row[o.name]) for o in objectives] for row in rows]
    front = set(pareto_indices(vectors))
    frame.insert(1, "pareto", [i in front for i in range(len(rows))])
    if not frame.empty:
        first = objectives[0]
        frame = frame.sort_values(first.name, ascending=first.direction == "minimize", kind="stable")
    return frame.reset_index(drop=True)


def front_hypervolume(frame: pd.DataFrame, objectives: list[Objective], reference: dict[str, float]) -> float:
    front = frame[frame["pareto"]]
    points = [[o.minimised(row[o.name]) for o in objectives] for _, row in front.iterrows()]
    return hypervolume(points, [o.minimised(reference[o.name]) for o in objectives])


def format_table(frame: pd.DataFrame, objectives: list[Objective], *, pareto_only: bool = True) -> str:
    shown = frame[frame["pareto"]] if pareto_only else frame
    if shown.empty:
        return "(no completed trials)"
    formats = {"accuracy": "{:.4f}".format, "latency_ms": "{:.3f}".format, "energy_uj": "{:.3f}".format,
               "size_kb": "{:.1f}".format, "params": "{:,.0f}".format, "ops": "{:.3g}".format,
               "bops": "{:.3g}".format, "flops": "{:.3g}".format}
    columns = ["trial", *[o.name for o in objectives], "params", "size_kb", "ops", "genotype"]
    columns = list(dict.fromkeys(c for c in columns if c in shown.columns))
    return shown[columns].to_string(index=False, formatters={c: f for c, f in formats.items() if c in columns})
