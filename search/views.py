"""The study run's views in MLflow: pareto.csv, trials.csv, the hypervolume over completed trials,
and (at most every PLOT_INTERVAL_S, and at the end) the Pareto plots."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import optuna
import pandas as pd

from .config import SearchConfig
from .objectives import Objective
from .plots import write_pareto_html, write_pareto_png
from .references import reference_frame
from .report import front_hypervolume, trials_frame
from .tracking import StudyTracker

PLOT_INTERVAL_S = 20.0  # plots are the slow part of a refresh; csv and metrics refresh every trial


class StudyViews:
    def __init__(self, study: optuna.Study, tracker: StudyTracker, objectives: list[Objective], config: SearchConfig):
        self.study, self.tracker, self.objectives, self.config = study, tracker, objectives, config
        self.last_plot = float("-inf")
        self.references = pd.DataFrame()

    def refresh(self, *, final: bool = False) -> tuple[pd.DataFrame, float]:
        frame = trials_frame(self.study, self.objectives)
        volume = front_hypervolume(frame, self.objectives, self.config.hypervolume_reference)
        self.references = reference_frame(self.study, self.objectives, frame)
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            frame[frame["pareto"]].to_csv(folder / "pareto.csv", index=False)
            frame.to_csv(folder / "trials.csv", index=False)
            if len(self.references):
                self.references.to_csv(folder / "references.csv", index=False)
            now = time.monotonic()
            if len(frame) and (final or now - self.last_plot >= PLOT_INTERVAL_S):
                title = f"bitnas study {self.config.study}: {len(frame)} trials"
                write_pareto_png(frame, self.objectives, folder / "pareto.png", title, self.references)
                write_pareto_html(frame, self.objectives, folder / "pareto.html", title, self.references)
                self.last_plot = now
            self.tracker.log_study_views(folder, hypervolume=volume, pareto_size=int(frame["pareto"].sum()),
                                         completed=len(frame))
        return frame, volume
