"""Opening a study for a search, and cleaning up after a driver that died.

A study remembers what it was created with (objectives, dataset, geometry, the whole config); a
search that resumes it must agree, or it is refused with one line before anything runs.
"""

from __future__ import annotations

from typing import Callable

import optuna
from optuna.trial import TrialState

from .config import ConfigError, SearchConfig
from .objectives import Objective
from .samplers import make_sampler
from .storage import open_storage, study_names
from .tracking import StudyTracker
from .trial_records import TrialRecorder


def open_study(config: SearchConfig, objectives: list[Objective], geometry: dict) -> optuna.Study:
    """Resume the study named in the config, checking it searches the same thing, or create it."""
    storage = open_storage(config.results_dir, config.storage)
    sampler = make_sampler(config.sampler, config.seed, config.trials, config.workers,
                           network_key=lambda params: config.space.decode(params, **geometry).hash())
    if config.study in study_names(storage):
        study = optuna.load_study(study_name=config.study, storage=storage, sampler=sampler)
        recorded = study.user_attrs.get("objectives")
        if recorded != list(config.objectives):
            raise ConfigError(f"study {config.study!r} was created with objectives {recorded}, not "
                              f"{list(config.objectives)}; choose another --study name")
        if study.user_attrs.get("dataset") != config.dataset:
            raise ConfigError(f"study {config.study!r} searches dataset {study.user_attrs.get('dataset')!r}, "
                              f"not {config.dataset!r}; choose another --study name")
        return study
    study = optuna.create_study(study_name=config.study, storage=storage, sampler=sampler,
                                directions=[o.direction for o in objectives])
    study.set_metric_names(list(config.objectives))
    study.set_user_attr("objectives", list(config.objectives))
    study.set_user_attr("dataset", config.dataset)
    study.set_user_attr("data_seed", config.seed)
    study.set_user_attr("geometry", geometry)
    return study


def recover_interrupted_trials(study: optuna.Study, tracker: StudyTracker, recorder: TrialRecorder,
                               out: Callable[[str], None]) -> None:
    """Trials left RUNNING by a driver that died can never report back: fail them, mark their
    MLflow runs KILLED, and queue their networks again (it was not the network's fault)."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        tracker.kill_trial(trial.number, params=trial.params, error="the search driver stopped")
        # An ASHA promotion is not queued as a new trial: the scheduler's saved state still holds it
        # as handed out and not reported, and the driver runs it again from its checkpoint.
        if trial.params and not trial.user_attrs.get("asha_rung"):
            recorder.requeue(trial.params, retry_of=trial.number, attempt=int(trial.user_attrs.get("attempt", 1)) + 1)
    if stale:
        promotions = sum(bool(t.user_attrs.get("asha_rung")) for t in stale)
        out(f"an earlier search of this study stopped with {len(stale)} trial(s) running: "
            f"marked them failed and queued their networks again"
            + (f" ({promotions} ASHA promotion(s): run again from their checkpoints)" if promotions else ""))
