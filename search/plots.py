"""Pareto plots: a PNG to glance at and an interactive HTML whose hover shows each network."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .objectives import Objective


def _axes(objectives: list[Objective]) -> tuple[str, str, str | None]:
    """y = first objective, x = second (or the trial number), colour = third if there is one."""
    y = objectives[0].name
    x = objectives[1].name if len(objectives) > 1 else "trial"
    colour = objectives[2].name if len(objectives) > 2 else None
    return x, y, colour


def write_pareto_png(frame: pd.DataFrame, objectives: list[Objective], path: Path, title: str,
                     references: pd.DataFrame | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y, colour = _axes(objectives)
    labels = {o.name: o.label for o in objectives} | {"trial": "trial number"}
    figure, axis = plt.subplots(figsize=(7.5, 5), dpi=120)
    scatter = axis.scatter(frame[x], frame[y], c=frame[colour] if colour else "tab:blue", cmap="viridis",
                           s=28, alpha=0.75, edgecolors="none")
    front = frame[frame["pareto"]].sort_values(x)
    axis.scatter(front[x], front[y], s=90, facecolors="none", edgecolors="crimson", linewidths=1.5, label="Pareto front")
    for _, row in front.iterrows():
        axis.annotate(f"#{int(row['trial'])}", (row[x], row[y]), textcoords="offset points", xytext=(5, 4), fontsize=7)
    if references is not None and len(references) and x in references.columns:
        axis.scatter(references[x], references[y], marker="*", s=140, color="crimson", label="reference architectures")
        for _, row in references.iterrows():
            axis.annotate(row["reference"], (row[x], row[y]), textcoords="offset points", xytext=(5, -9),
                          fontsize=7, color="crimson")
    if colour:
        figure.colorbar(scatter, ax=axis, label=labels[colour])
    if x in ("latency_ms", "energy_uj", "ops", "params", "size_kb") and (frame[x] > 0).all():
        axis.set_xscale("log")
    axis.set_xlabel(labels[x])
    axis.set_ylabel(labels[y])
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write_pareto_html(frame: pd.DataFrame, objectives: list[Objective], path: Path, title: str,
                      references: pd.DataFrame | None = None) -> None:
    import plotly.graph_objects as go

    x, y, colour = _axes(objectives)
    hover = [
        "<br>".join([f"trial {int(row['trial'])}", row["genotype"].replace(" | ", "<br>  ")]
                    + [f"{o.name}: {row[o.name]:.4g}" for o in objectives]
                    + [f"{c}: {row[c]:.4g}" for c in ("params", "size_kb", "ops") if c in row and pd.notna(row[c])])
        for _, row in frame.iterrows()
    ]
    marker = dict(size=[14 if p else 8 for p in frame["pareto"]],
                  line=dict(width=[2 if p else 0 for p in frame["pareto"]], color="crimson"))
    if colour:
        marker.update(color=frame[colour], colorscale="Viridis", showscale=True, colorbar=dict(title=colour))
    figure = go.Figure(go.Scatter(x=frame[x], y=frame[y], mode="markers", marker=marker, text=hover,
                                  hovertemplate="%{text}<extra></extra>"))
    if references is not None and len(references) and x in references.columns:
        text = ["<br>".join([f"reference {row['reference']}", row["genotype"].replace(" | ", "<br>  ")]
                            + [f"{o.name}: {row[o.name]:.4g}" for o in objectives]) for _, row in references.iterrows()]
        figure.add_trace(go.Scatter(x=references[x], y=references[y], mode="markers+text", text=references["reference"],
                                    textposition="bottom center", hovertext=text, hoverinfo="text",
                                    marker=dict(symbol="star", size=14, color="crimson"), name="reference architectures"))
    labels = {o.name: o.label for o in objectives} | {"trial": "trial number"}
    figure.update_layout(title=f"{title} (ringed: Pareto front)", xaxis_title=labels[x], yaxis_title=labels[y],
                         template="plotly_white")
    if x in ("latency_ms", "energy_uj", "ops", "params", "size_kb"):
        figure.update_xaxes(type="log")
    # The plotly library is embedded so the page works offline, as the machines here are.
    figure.write_html(path, include_plotlyjs=True, full_html=True)
