"""The study run's views in MLflow: pareto.csv, trials.csv, references.csv, the hypervolume metric
over completed trials, the `pareto` tag of every trial run, and (at most every PLOT_INTERVAL_S, and
at the end) the plots: pareto.png / pareto.html, pairwise.png (three or more objectives),
hypervolume.png, parallel.html (design choices against objectives) and importance.png /
importance.csv (which design choices matter for each objective)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from .config import SearchConfig
from .objectives import Objective
from .importance import design_importances
from .pareto import hypervolume
from .plots import (write_hypervolume_png, write_importance_png, write_pairwise_png, write_parallel_html,
                    write_pareto_html, write_pareto_png)
from .references import reference_frame
from .report import front_hypervolume, minimised_points, trials_frame
from .tracking import StudyTracker

# Plots are the slow part of a refresh (csv and metrics refresh every trial): they are redrawn at
# most every PLOT_INTERVAL_S, and never more often than keeps them under PLOT_SHARE of the driver's
# time, so a long study's growing plots do not steal the workers' CPU.
PLOT_INTERVAL_S = 20.0
PLOT_SHARE = 0.05


def hypervolume_curve(frame: pd.DataFrame, objectives: list[Objective], reference: dict[str, float]) -> pd.DataFrame:
    """Hypervolume of the feasible front after each completed trial, in trial-number order."""
    ordered = frame.sort_values("trial")
    bound = [o.minimised(reference[o.name]) for o in objectives]
    points = minimised_points(ordered, objectives)
    counted = (ordered["feasible"].astype(bool) & ordered["duplicate_of"].isna()).to_numpy()
    front = np.empty((0, len(objectives)))
    volume, volumes = 0.0, np.zeros(len(ordered))
    for index, point in enumerate(points):
        # Only a point that no front member weakly dominates changes the front (and the volume).
        if counted[index] and not (front <= point).all(axis=1).any():
            front = np.vstack([front[~((point <= front).all(axis=1))], point])
            volume = hypervolume(front, bound)
        volumes[index] = volume
    return pd.DataFrame({"completed": np.arange(1, len(ordered) + 1), "trial": ordered["trial"].to_numpy(dtype=int),
                         "hypervolume": volumes})


def params_frame(study: optuna.Study) -> pd.DataFrame:
    """The design choices (Optuna parameters) of each completed trial."""
    rows = [{"trial": t.number, **t.params}
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["trial"])


class StudyViews:
    def __init__(self, study: optuna.Study, tracker: StudyTracker, objectives: list[Objective], config: SearchConfig):
        self.study, self.tracker, self.objectives, self.config = study, tracker, objectives, config
        self.next_plot = float("-inf")
        self.references = pd.DataFrame()
        self.importances = pd.DataFrame()  # refreshed with the plots (search/importance.py)

    def refresh(self, *, final: bool = False) -> tuple[pd.DataFrame, float]:
        frame = trials_frame(self.study, self.objectives)
        volume = front_hypervolume(frame, self.objectives, self.config.hypervolume_reference)
        self.references = reference_frame(self.study, self.objectives, frame)
        self.tracker.set_pareto_tags({int(n) for n in frame.loc[frame["pareto"], "trial"]},
                                     {int(n) for n in frame["trial"]})
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            frame[frame["pareto"]].to_csv(folder / "pareto.csv", index=False)
            frame.to_csv(folder / "trials.csv", index=False)
            if len(self.references):
                self.references.to_csv(folder / "references.csv", index=False)
            now = time.monotonic()
            if len(frame) and (final or now >= self.next_plot):
                self._plots(frame, folder)
                took = time.monotonic() - now
                self.next_plot = now + max(PLOT_INTERVAL_S, took / PLOT_SHARE)
            self.tracker.log_study_views(folder, hypervolume=volume, pareto_size=int(frame["pareto"].sum()),
                                         completed=len(frame))
        return frame, volume

    def _plots(self, frame: pd.DataFrame, folder: Path) -> None:
        title = f"bitnas study {self.config.study}: {len(frame)} trials"
        write_pareto_png(frame, self.objectives, folder / "pareto.png", title, self.references)
        write_pareto_html(frame, self.objectives, folder / "pareto.html", title, self.references)
        if len(self.objectives) >= 3:
            write_pairwise_png(frame, self.objectives, folder / "pairwise.png", title, self.references)
        curve = hypervolume_curve(frame, self.objectives, self.config.hypervolume_reference)
        curve.to_csv(folder / "hypervolume.csv", index=False)
        write_hypervolume_png(curve, folder / "hypervolume.png", f"bitnas study {self.config.study}: hypervolume")
        write_parallel_html(frame, params_frame(self.study), self.objectives, folder / "parallel.html", title)
        self.importances = design_importances(self.study, self.objectives)
        if len(self.importances):
            self.importances.to_csv(folder / "importance.csv", index=False)
            write_importance_png(self.importances, self.objectives, folder / "importance.png",
                                 f"bitnas study {self.config.study}: which design choices matter")
