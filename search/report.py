"""The study as a table: one row per completed trial, its objectives, costs, feasibility and
Pareto membership. The front is built from feasible trials only."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd

from .constraints import violations
from .objectives import Objective
from .pareto import hypervolume, pareto_indices

# Columns shown after the objectives, when the trial has them.
COST_COLUMNS = ["params", "size_kb", "ops", "bops", "flops"]


FINAL = "final"  # the `fidelity` of finalists: the front retrained at the final budget


def trials_frame(study: optuna.Study, objectives: list[Objective], *, among: str = "reported") -> pd.DataFrame:
    """Completed trials, best-first by the first objective, with `feasible`, `violates` and `pareto`.

    `pareto` marks the reported front: the finalists' once the study has any (their accuracy is
    from the final budget; a trial's may be a one-shot score), else the trials'. `among="trials"`:
    the front of the trials alone, from which finalists are chosen."""
    rows = []
    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    # `schedule: asha`: a trial whose network a completed promotion trained further is superseded by
    # it; a network is judged at its highest completed rung only (search/scheduling.py).
    superseded = {t.user_attrs["promoted_from"] for t in completed if "promoted_from" in t.user_attrs}
    for trial in completed:
        metrics = trial.user_attrs.get("metrics", {})
        broken = violations(trial.user_attrs.get("constraints", {}))
        row = {"trial": trial.number, "feasible": not broken, "violates": ", ".join(broken),
               "duplicate_of": trial.user_attrs.get("duplicate_of"),
               "stopped_early": bool(trial.user_attrs.get("stopped_early", False)),
               "genotype": trial.user_attrs.get("genotype_short", ""),
               "fidelity": trial.user_attrs.get("fidelity", "scratch"),
               "asha_rung": trial.user_attrs.get("asha_rung"), "superseded": trial.number in superseded}
        row.update({o.name: value for o, value in zip(objectives, trial.values)})
        row.update({c: metrics[c] for c in COST_COLUMNS if c in metrics})
        rows.append(row)
    columns = ["trial", *[o.name for o in objectives], *COST_COLUMNS, "feasible", "violates", "duplicate_of",
               "stopped_early", "genotype", "fidelity", "asha_rung", "superseded"]
    frame = pd.DataFrame(rows, columns=columns)
    # One point per distinct network: duplicates repeat their original's result.
    # Trials stopped early (evaluators/early_stopping.py) trained for fewer epochs: their accuracy is
    # not comparable, so the front is built from fully trained trials only.
    finals = among == "reported" and any(row["fidelity"] == FINAL for row in rows)
    candidates = [i for i, row in enumerate(rows)
                  if row["feasible"] and row["duplicate_of"] is None and not row["stopped_early"] and not row["superseded"]
                  and (row["fidelity"] == FINAL) == finals]
    vectors = [[o.minimised(rows[i][o.name]) for o in objectives] for i in candidates]
    front = {candidates[i] for i in pareto_indices(vectors)}
    frame.insert(1, "pareto", [i in front for i in range(len(rows))])
    if not frame.empty:
        first = objectives[0]
        frame = frame.sort_values(first.name, ascending=first.direction == "minimize", kind="stable")
    return frame.reset_index(drop=True)


def front_hypervolume(frame: pd.DataFrame, objectives: list[Objective], reference: dict[str, float]) -> float:
    front = frame.loc[frame["pareto"].astype(bool)]  # .loc: an empty object-typed mask would select columns
    return hypervolume(minimised_points(front, objectives), [o.minimised(reference[o.name]) for o in objectives])


def minimised_points(frame: pd.DataFrame, objectives: list[Objective]) -> np.ndarray:
    """The frame's objectives as rows of a minimisation problem (maximised ones negated)."""
    signs = np.array([-1.0 if o.direction == "maximize" else 1.0 for o in objectives])
    return frame[[o.name for o in objectives]].to_numpy(dtype=float).reshape(len(frame), len(objectives)) * signs


def format_table(frame: pd.DataFrame, objectives: list[Objective]) -> str:
    """The Pareto front, plus the infeasible trials that would have been on it, marked."""
    if frame.empty:
        return "(no completed trials)"
    unique = frame[frame["duplicate_of"].isna()]
    shown = unique[unique["pareto"]]
    infeasible = unique[~unique["feasible"]]
    if len(infeasible):
        vectors = [[o.minimised(row[o.name]) for o in objectives] for _, row in unique.iterrows()]
        unconstrained = set(pareto_indices(vectors))
        beaten = [i for i, (_, row) in enumerate(unique.iterrows()) if i in unconstrained and not row["feasible"]]
        shown = pd.concat([shown, unique.iloc[beaten]]).sort_index()
    formats = {"accuracy": "{:.4f}".format, "latency_ms": "{:.3f}".format, "energy_uj": "{:.3f}".format,
               "size_kb": "{:.1f}".format, "params": "{:,.0f}".format, "ops": "{:.3g}".format,
               "bops": "{:.3g}".format, "flops": "{:.3g}".format}
    columns = ["trial", *[o.name for o in objectives], "params", "size_kb", "ops", "genotype"]
    columns = list(dict.fromkeys(c for c in columns if c in shown.columns))
    table = shown[columns].copy()
    if len(infeasible):
        table.insert(1, "status", ["pareto" if row["pareto"] else f"INFEASIBLE ({row['violates']})"
                                   for _, row in shown.iterrows()])
    return table.to_string(index=False, formatters={c: f for c, f in formats.items() if c in columns})


def _side_by_side_verdict(row: pd.Series) -> str:
    """For a reference no trial dominates on the single measurements: what timing the closest
    trials against it side by side found (search/latency_check.py)."""
    checked = row.get("side_by_side") or {}
    if not checked:
        return "not dominated by any trial"
    ratios = ", ".join(f"trial {trial} {ratio:.2f}x" for trial, ratio in sorted(checked.items()))
    winners = row.get("dominated_side_by_side") or []
    if winners:
        return (f"dominated by trial{'s' if len(winners) > 1 else ''} {', '.join(map(str, winners))} with latency "
                f"timed side by side (latency against this reference: {ratios})")
    return f"not dominated by any trial (latency timed side by side: {ratios})"


def reference_lines(references: pd.DataFrame, objectives: list[Objective]) -> list[str]:
    """The reference architectures, each with the searched trials that dominate it."""
    if references.empty:
        return []
    lines = ["Reference architectures (same training budget and measurements):"]
    for _, row in references.iterrows():
        shown = "  ".join(f"{o.name} {row[o.name]:.4g}" for o in objectives)
        beaten = row["dominated_by"]
        verdict = (f"dominated by trial{'s' if len(beaten) > 1 else ''} {', '.join(map(str, beaten[:5]))}"
                   f"{' ...' if len(beaten) > 5 else ''}" if beaten else _side_by_side_verdict(row))
        lines.append(f"  {row['reference']:<22} {shown}  {verdict}")
    return lines + [""]
