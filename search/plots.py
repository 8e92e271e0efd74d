"""Study plots: the Pareto front as a PNG to glance at and an interactive HTML whose hover shows each
network; pairwise objective plots, the hypervolume over trials, and parallel coordinates of the
design choices. Infeasible trials (over a budget) are drawn grey; reference architectures as
labelled stars."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pandas as pd

from .objectives import Objective

LOG_AXES = ("latency_ms", "energy_uj", "ops", "params", "size_kb")
GREY = "#b0b0b0"


def _axes(objectives: list[Objective]) -> tuple[str, str, str | None]:
    """y = first objective, x = second (or the trial number), colour = third if there is one."""
    y = objectives[0].name
    x = objectives[1].name if len(objectives) > 1 else "trial"
    colour = objectives[2].name if len(objectives) > 2 else None
    return x, y, colour


def _labels(objectives: list[Objective]) -> dict[str, str]:
    return {o.name: o.label for o in objectives} | {"trial": "trial number"}


def _feasible(frame: pd.DataFrame) -> pd.Series:
    return frame["feasible"].astype(bool) if "feasible" in frame.columns else pd.Series(True, index=frame.index)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _scatter_pair(axis, frame: pd.DataFrame, x: str, y: str, colour: str | None, references: pd.DataFrame | None,
                  highlight: int | None = None, annotate: bool = True):
    feasible = _feasible(frame)
    ok, bad = frame[feasible], frame[~feasible]
    if len(bad):
        axis.scatter(bad[x], bad[y], s=22, color=GREY, alpha=0.6, edgecolors="none", label="infeasible (over a budget)")
    colours = dict(c=ok[colour], cmap="viridis") if colour else dict(color="tab:blue")
    scatter = axis.scatter(ok[x], ok[y], s=28, alpha=0.75, edgecolors="none", **colours)
    front = frame[frame["pareto"]].sort_values(x)
    axis.scatter(front[x], front[y], s=90, facecolors="none", edgecolors="crimson", linewidths=1.5, label="Pareto front")
    if annotate:
        for _, row in front.iterrows():
            axis.annotate(f"#{int(row['trial'])}", (row[x], row[y]), textcoords="offset points", xytext=(5, 4),
                          fontsize=7)
    if references is not None and len(references) and x in references.columns and y in references.columns:
        axis.scatter(references[x], references[y], marker="*", s=140, color="crimson", label="reference architectures")
        if annotate:
            for _, row in references.iterrows():
                axis.annotate(row["reference"], (row[x], row[y]), textcoords="offset points", xytext=(5, -9),
                              fontsize=7, color="crimson")
    if highlight is not None and (frame["trial"] == highlight).any():
        row = frame[frame["trial"] == highlight].iloc[0]
        axis.scatter([row[x]], [row[y]], marker="D", s=160, facecolors="none", edgecolors="black", linewidths=2.2,
                     label=f"this network (trial {highlight})", zorder=5)
    if x in LOG_AXES and (frame[x] > 0).all():
        axis.set_xscale("log")
    return scatter


def write_pareto_png(frame: pd.DataFrame, objectives: list[Objective], path: Path, title: str,
                     references: pd.DataFrame | None = None, highlight: int | None = None) -> None:
    """The front on the first two objectives (colour: the third); `highlight` marks one trial."""
    plt = _pyplot()
    x, y, colour = _axes(objectives)
    labels = _labels(objectives)
    figure, axis = plt.subplots(figsize=(7.5, 5), dpi=120)
    scatter = _scatter_pair(axis, frame, x, y, colour, references, highlight)
    if colour:
        figure.colorbar(scatter, ax=axis, label=labels[colour])
    axis.set_xlabel(labels[x])
    axis.set_ylabel(labels[y])
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write_pairwise_png(frame: pd.DataFrame, objectives: list[Objective], path: Path, title: str,
                       references: pd.DataFrame | None = None) -> None:
    """Every pair of objectives side by side (for three or more objectives)."""
    plt = _pyplot()
    pairs = list(combinations([o.name for o in objectives], 2))
    labels = _labels(objectives)
    columns = min(3, len(pairs))
    rows = -(-len(pairs) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.9 * rows), dpi=110, squeeze=False)
    for axis, (y, x) in zip(axes.flat, pairs):
        _scatter_pair(axis, frame, x, y, None, references, annotate=False)
        axis.set_xlabel(labels[x], fontsize=8)
        axis.set_ylabel(labels[y], fontsize=8)
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(pairs):]:
        axis.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, names, loc="upper right", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout(rect=(0, 0, 1, 0.93))
    figure.savefig(path)
    plt.close(figure)


def write_hypervolume_png(curve: pd.DataFrame, path: Path, title: str) -> None:
    """Hypervolume of the feasible front after each completed trial (columns trial, hypervolume)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4), dpi=110)
    axis.step(curve["completed"], curve["hypervolume"], where="post", color="tab:blue")
    axis.set_xlabel("completed trials")
    axis.set_ylabel("hypervolume of the feasible front")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _hover(row: dict, objectives: list[Objective], first_line: str) -> str:
    return "<br>".join([first_line, str(row["genotype"]).replace(" | ", "<br>  ")]
                       + [f"{o.name}: {row[o.name]:.4g}" for o in objectives]
                       + [f"{c}: {row[c]:.4g}" for c in ("params", "size_kb", "ops") if c in row and pd.notna(row[c])])


def write_pareto_html(frame: pd.DataFrame, objectives: list[Objective], path: Path, title: str,
                      references: pd.DataFrame | None = None) -> None:
    import plotly.graph_objects as go

    x, y, colour = _axes(objectives)
    feasible = _feasible(frame)
    ok, bad = frame[feasible], frame[~feasible]
    marker = dict(size=[14 if p else 8 for p in ok["pareto"]],
                  line=dict(width=[2 if p else 0 for p in ok["pareto"]], color="crimson"))
    if colour:
        marker.update(color=ok[colour], colorscale="Viridis", showscale=True, colorbar=dict(title=colour))
    hover = [_hover(row, objectives, f"trial {int(row['trial'])}" + (" (Pareto front)" if row["pareto"] else ""))
             for row in ok.to_dict("records")]  # records: iterrows builds a Series per row
    figure = go.Figure(go.Scatter(x=ok[x], y=ok[y], mode="markers", marker=marker, text=hover, name="trials",
                                  hovertemplate="%{text}<extra></extra>"))
    if len(bad):
        text = [_hover(row, objectives, f"trial {int(row['trial'])}: INFEASIBLE ({row.get('violates', '')})")
                for row in bad.to_dict("records")]
        figure.add_trace(go.Scatter(x=bad[x], y=bad[y], mode="markers", marker=dict(size=8, color=GREY), text=text,
                                    name="infeasible (over a budget)", hovertemplate="%{text}<extra></extra>"))
    if references is not None and len(references) and x in references.columns:
        text = [_hover(row, objectives, f"reference {row['reference']}") for row in references.to_dict("records")]
        figure.add_trace(go.Scatter(x=references[x], y=references[y], mode="markers+text", text=references["reference"],
                                    textposition="bottom center", hovertext=text, hoverinfo="text",
                                    marker=dict(symbol="star", size=14, color="crimson"), name="reference architectures"))
    labels = _labels(objectives)
    figure.update_layout(title=f"{title} (ringed: Pareto front; grey: infeasible)", xaxis_title=labels[x],
                         yaxis_title=labels[y], template="plotly_white")
    if x in LOG_AXES:
        figure.update_xaxes(type="log")
    # The plotly library is embedded so the page works offline, as the machines here are.
    figure.write_html(path, include_plotlyjs=True, full_html=True)


def write_parallel_html(frame: pd.DataFrame, params: pd.DataFrame, objectives: list[Objective], path: Path,
                        title: str) -> None:
    """Parallel coordinates: each design choice (Optuna parameter) and each objective an axis, one
    line per trial coloured by the first objective, so the choices that drive it stand out."""
    import plotly.graph_objects as go

    joined = frame.merge(params, on="trial", how="inner")
    dimensions = []
    for name in [c for c in params.columns if c != "trial"]:
        values = joined[name]
        if values.nunique(dropna=True) < 2:
            continue  # a choice every trial made the same way explains nothing
        levels = sorted(values.dropna().unique(), key=lambda v: (isinstance(v, str), v))
        codes = {level: i for i, level in enumerate(levels)}
        dimensions.append(dict(label=name, values=[codes.get(v, -1) for v in values],
                               tickvals=list(range(len(levels))), ticktext=[str(v) for v in levels]))
    for objective in objectives:
        dimensions.append(dict(label=objective.name, values=joined[objective.name]))
    first = objectives[0].name
    figure = go.Figure(go.Parcoords(line=dict(color=joined[first], colorscale="Viridis", showscale=True,
                                              colorbar=dict(title=first)), dimensions=dimensions))
    figure.update_layout(title=f"{title}: design choices and objectives (drag along an axis to filter)",
                         template="plotly_white")
    figure.write_html(path, include_plotlyjs=True, full_html=True)


def write_importance_png(importances: pd.DataFrame, objectives: list[Objective], path: Path, title: str,
                         top: int = 10) -> None:
    """One panel per objective: its `top` most important design choices as horizontal bars
    (columns objective, parameter, importance; search/importance.py)."""
    plt = _pyplot()
    shown = [o for o in objectives if (importances["objective"] == o.name).any()]
    figure, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 0.32 * top + 1.6), dpi=110, squeeze=False)
    for axis, objective in zip(axes.flat, shown):
        ranked = importances[importances["objective"] == objective.name].nlargest(top, "importance")[::-1]
        axis.barh(ranked["parameter"], ranked["importance"], color="tab:blue")
        axis.set_title(objective.label, fontsize=9)
        axis.set_xlabel("importance (mean decrease in impurity, sums to 1)", fontsize=8)
        axis.tick_params(labelsize=8)
        axis.grid(axis="x", alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout(rect=(0, 0, 1, 0.92))
    figure.savefig(path)
    plt.close(figure)
