"""A finished (or paused) study as the tools after a search read it: its trials and table, its
config and the exact request its trials were evaluated with, its references, its MLflow artefacts.

This is the public read API of `bitnas.search` (export uses nothing else): it never writes to
the study storage.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState
from pydantic import ValidationError

from bitnas.errors import UserError
from bitnas.spaces.genotype import describe_validation_error

from .config import SearchConfig
from .objectives import Objective, objectives_for
from .references import reference_frame
from .report import trials_frame
from .requests import data_options, eval_request, teacher_spec
from .storage import load_existing_study
from .tracking import TrialArtifacts


class StudyArchive:
    """Read-only view of the study `name` under `results` (or in the database `storage`)."""

    def __init__(self, results: Path, name: str, storage: str | None = None):
        self.results = Path(results)
        self._study: optuna.Study = load_existing_study(self.results, name, storage)
        self.name = name

    # --- what the study is ---------------------------------------------------------------------
    @cached_property
    def config(self) -> SearchConfig:
        """The config of the study's last search, with `results` pointing where the study is now."""
        recorded = self._study.user_attrs.get("config")
        if not isinstance(recorded, dict):
            raise UserError(f"study {self.name!r} has no recorded config (it was not made by `bitnas search`)")
        try:
            return SearchConfig.model_validate({**recorded, "results": str(self.results)})
        except ValidationError as error:
            raise UserError(f"study {self.name!r}: its recorded config does not validate in this version of "
                            f"bitnas: {describe_validation_error(error, '')}") from None

    @property
    def objectives(self) -> list[Objective]:
        return objectives_for(self._study.user_attrs["objectives"])

    @property
    def dataset(self) -> str:
        return self._study.user_attrs["dataset"]

    @property
    def data_seed(self) -> int:
        return int(self._study.user_attrs.get("data_seed", 0))

    def data_options(self):
        return data_options(self.config)

    # --- trials --------------------------------------------------------------------------------
    def trials(self) -> dict[int, FrozenTrial]:
        return {t.number: t for t in self._study.get_trials(deepcopy=False)}

    def completed(self) -> list[FrozenTrial]:
        return self._study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))

    @cached_property
    def frame(self) -> pd.DataFrame:
        """One row per completed trial (search/report.py: objectives, costs, feasible, pareto)."""
        return trials_frame(self._study, self.objectives)

    def references(self) -> pd.DataFrame:
        return reference_frame(self._study, self.objectives, self.frame)

    # --- how its trials were evaluated ------------------------------------------------------------
    def request(self, seed_offset: int, *, epochs: float | None = None, distill: bool | None = None):
        """The request the study's trial `seed_offset` was evaluated with, optionally trained for
        `epochs` and with distillation switched on or off; the teacher is the study's own (trained
        with the study's data options and epochs, or read from its cache)."""
        config = self.config
        training = {key: value for key, value in (("epochs", epochs), ("distill", distill)) if value is not None}
        if training:
            config = config.model_copy(update={"training": config.training.model_copy(update=training)})
        spec = teacher_spec(config)
        return eval_request(config, seed_offset, teacher=spec.load_or_train() if spec else None)

    def artifacts(self, tracking_uri: str | None = None) -> TrialArtifacts:
        """The study's MLflow store: `--tracking-uri`, else the one the search logged to."""
        return TrialArtifacts(self.results, self.name, tracking_uri or self.config.tracking_uri)

    def write_pareto_png(self, path: Path, highlight: int) -> None:
        from .plots import write_pareto_png

        write_pareto_png(self.frame, self.objectives, path,
                         f"study {self.name}: trial {highlight} among {len(self.frame)} trials", self.references(),
                         highlight=highlight)
