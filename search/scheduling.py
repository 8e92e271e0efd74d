"""`schedule: asha` in the driver: MO-ASHA's decisions (search/asha.py) tied to the study, to the
training checkpoints on disk and to the progress lines.

How networks map to Optuna trials: every rung a network trains to is an Optuna trial of its own.
Optuna's multi-objective studies take no intermediate values, and a told trial's values can never
change, so a network promoted to rung k is asked as a new trial (the same params, enqueued) with
user attributes `asha_network` (the number of its rung-0 trial, which names the network, its
MLflow run and its training seed), `asha_rung` and `promoted_from` (the trial of rung k - 1). A
trial that a completed promotion continued is superseded: `search/report.py` keeps it off the
Pareto front, so every network is judged at its highest completed rung, with real values told for
each rung. A promotion is never answered as "same network as trial N": the duplicate check applies
to the sampler's proposals only.

`trials` counts the sampler's proposals (rung-0 trials, duplicates included), not promotions: the
search ends once that many have completed and no rung has a promotion left to hand out.

Constraints: ASHA is fed the objective values the study is told, except that a network that breaks
a constraint (or was never trained: over a pre-training budget, or skipped by the proxy) is
reported as failed (NaN). It then ranks after every feasible network and is never promoted, as the
front it could join only holds feasible networks.

Checkpoints: `<results>/asha/<network>.pt`, the training state at the network's latest rung below
the top, written to a `.partial` file and renamed, before the study is told of the rung, so a
completed rung always has its checkpoint and a driver that died resumes its promotions from it.
A network that reached the top rung or failed has its checkpoint deleted then; the stopped ones
are deleted when the search ends. Training is one run cut into rungs (the schedule is over
`training.epochs`), so a promotion whose checkpoint is gone (stopped, then promoted by a later,
larger search of the same study) trains from scratch to its rung and gets the same weights.

The scheduler's `state()` is kept in the study user attribute `asha_state` after every promotion
handed out and every rung reported; a restarted driver restores it, reports the completed rungs the
state missed (a driver that died between the study's tell and saving the state) and runs the
promotions handed out and not reported again. The study attribute `asha_status` maps each trial
to promoted, promotable, stopped, failed or top, for tools that read the study.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from .asha import AshaSchedule, Job, MultiObjectiveAsha
from .config import ConfigError, SearchConfig
from .constraints import constraint_values
from .objectives import Objective
from .report import FINAL

STATE_ATTR, STATUS_ATTR = "asha_state", "asha_status"
# What `MultiObjectiveAsha.status` says, in the study's words (`finished`: at the top rung).
_SHOWN = {"finished": "top", "promoted": "promoted", "promotable": "promotable", "stopped": "stopped", "failed": "failed"}


class AshaPlan:
    """The study's MO-ASHA scheduler, restored from the study when it has one."""

    def __init__(self, config: SearchConfig, study: optuna.Study, objectives: list[Objective], num_classes: int,
                 out: Callable[[str], None] = print):
        self.config, self.study, self.objectives, self.num_classes, self.out = config, study, objectives, num_classes, out
        self.schedule = AshaSchedule(config.asha.min_epochs, config.training.epochs, config.asha.eta)
        self.rungs, self.top = self.schedule.rungs, self.schedule.top
        self.folder = config.results_dir / "asha"
        saved = study.user_attrs.get(STATE_ATTR)
        if saved:
            self.asha = MultiObjectiveAsha.restore(saved)
            if self.asha.schedule != self.schedule:
                raise ConfigError(f"study {config.study!r} was scheduled with asha rungs "
                                  f"{', '.join(f'{r:g}' for r in self.asha.schedule.rungs)} epochs, not "
                                  f"{', '.join(f'{r:g}' for r in self.rungs)}; choose another --study name")
        else:
            self.asha = MultiObjectiveAsha(self.schedule, [o.direction for o in objectives])
        # network -> the trial holding its highest completed rung (what a promotion continues)
        self.latest: dict[int, int] = {}
        reported = {(k, r["trial_id"]) for k, rung in enumerate(self.asha.state()["rungs"]) for r in rung["results"]}
        missed = False
        for trial in sorted(self._scheduled(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))),
                            key=lambda t: t.number):
            network, rung = int(trial.user_attrs["asha_network"]), int(trial.user_attrs["asha_rung"])
            self.latest[network] = trial.number
            if (rung, network) not in reported:
                self.asha.report(network, rung, self.values(trial.user_attrs["metrics"]))
                missed = True
        if missed:
            self.save()
        # Handed out by a driver that stopped before they were reported: run first, from their checkpoints.
        self.resume_jobs: list[Job] = self.asha.pending()

    @staticmethod
    def _scheduled(trials):
        return [t for t in trials if "asha_network" in t.user_attrs and t.user_attrs.get("fidelity") != FINAL]

    def values(self, metrics: dict) -> list[float]:
        """The objective values ASHA ranks: the study's, or NaN for a network that breaks a constraint
        or was not trained (it then ranks last and is never promoted)."""
        broken = any(v > 0 for v in constraint_values(self.config.constraints, metrics, self.num_classes).values())
        untrained = metrics.get("rejected_before_training") or metrics.get("skipped_by_proxy")
        if broken or untrained:
            return [math.nan] * len(self.objectives)
        return [float(metrics[o.metric]) for o in self.objectives]

    # -- what to run -----------------------------------------------------------------------------

    def next_job(self) -> Job | None:
        """A promotion to run now (one a stopped driver left first), or None: ask the sampler."""
        if self.resume_jobs:
            return self.resume_jobs.pop(0)
        job = self.asha.next_job()
        if job is not None:
            self.save()  # handed out: a driver that dies now runs it again after a restart
        return job

    def has_work(self) -> bool:
        """A promotion is waiting to be handed out (without handing it out)."""
        return bool(self.resume_jobs) or any(self.asha.promotable(k) for k in range(self.top))

    # -- what finished ---------------------------------------------------------------------------

    def completed(self, network: int, rung: int, trial_number: int, metrics: dict, checkpoint: bytes | None) -> None:
        """A rung completed (the study is told after this): keep its checkpoint for the next rung."""
        if rung < self.top and checkpoint is not None:
            self._write_checkpoint(network, checkpoint)
        else:
            self.delete_checkpoint(network)

    def reported(self, network: int, rung: int, trial_number: int, metrics: dict | None) -> None:
        """Tell ASHA the rung's values (None: the rung failed) once the study has them, and save."""
        self.asha.report(network, rung, self.values(metrics) if metrics is not None else [math.nan] * len(self.objectives))
        if metrics is not None:
            self.latest[network] = trial_number
        else:
            self.delete_checkpoint(network)  # failed: never promoted again
        self.save()

    def save(self) -> None:
        self.study.set_user_attr(STATE_ATTR, self.asha.state())
        self.study.set_user_attr(STATUS_ATTR, self.statuses())

    def statuses(self) -> dict[str, str]:
        """Trial number -> promoted (a later rung continued it) or the network's status at its latest rung."""
        shown: dict[str, str] = {}
        networks = {r["trial_id"] for rung in self.asha.state()["rungs"] for r in rung["results"]}
        for network in networks:
            shown[str(network)] = _SHOWN[self.asha.status(network)]
        for trial in self._scheduled(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))):
            network = int(trial.user_attrs["asha_network"])
            if self.latest.get(network) == trial.number:
                shown[str(trial.number)] = shown.get(str(network), "promotable")
            else:
                shown[str(trial.number)] = "promoted"
        return {key: shown[key] for key in sorted(shown, key=int)}

    def status_note(self, network: int, rung: int) -> str:
        """For the progress line: where the rung is on the ladder."""
        return f"rung {rung}/{self.top} ({self.rungs[rung]:.3g} ep)"

    def finish(self) -> None:
        """The search ended: say which networks stopped where, and delete checkpoints no rung will read."""
        stopped = []
        for network, trial_number in sorted(self.latest.items()):
            if self.asha.status(network) in ("stopped", "failed"):
                rung = int(self.study.trials[trial_number].user_attrs["asha_rung"])
                stopped.append(f"{trial_number} at rung {rung}")
                self.delete_checkpoint(network)
        if stopped:
            self.out(f"asha: stopped trial(s) {', '.join(stopped)}; "
                     f"{sum(self.asha.status(n) == 'finished' for n in self.latest)} network(s) reached the top rung "
                     f"({self.rungs[-1]:g} ep)")

    # -- checkpoints -----------------------------------------------------------------------------

    def checkpoint_path(self, network: int) -> Path:
        return self.folder / f"{network}.pt"

    def read_checkpoint(self, network: int) -> bytes | None:
        path = self.checkpoint_path(network)
        return path.read_bytes() if path.is_file() else None

    def _write_checkpoint(self, network: int, data: bytes) -> None:
        # Written aside and renamed: a driver killed mid-write leaves the previous checkpoint whole.
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.checkpoint_path(network).with_suffix(".pt.partial")
        with open(partial, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, self.checkpoint_path(network))

    def delete_checkpoint(self, network: int) -> None:
        self.checkpoint_path(network).unlink(missing_ok=True)
