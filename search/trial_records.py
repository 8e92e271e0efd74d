"""Recording a trial's life in both stores at once: the Optuna study (values, constraints, user
attributes that other Optuna tools can read) and its MLflow child run (opened RUNNING at dispatch,
closed FINISHED, FAILED or KILLED).

MLflow is written before the study is told: the trained weights live only in MLflow, so a trial
the study calls COMPLETE always has them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import optuna
import pandas as pd
from optuna.trial import TrialState

from bitnas.spaces import Genotype

from .config import SearchConfig
from .constraints import constraint_values
from .footprint import TRIAL_ATTR as FOOTPRINT_ATTR, StudyFootprint, duplicate_record, run_metrics
from .objectives import Objective
from .tracking import StudyTracker


@dataclass(frozen=True)
class Reusable:
    """What a completed trial leaves for an identical network proposed later."""

    number: int
    user_attrs: dict


@dataclass
class TrialInFlight:
    trial: optuna.Trial
    genotype: Genotype
    params: dict
    started: float
    attempt: int
    # `schedule: asha`: the rung this trial trains to, and the network (its rung-0 trial's number,
    # which is also its MLflow run and its training seed); None without a schedule.
    rung: int = 0
    network: int | None = None

    @property
    def continues(self) -> bool:
        """An ASHA promotion: a network trained further from its checkpoint, in its network's run."""
        return self.network is not None and self.network != self.trial.number


def search_tags(genotype: Genotype, config: SearchConfig) -> dict[str, str]:
    """Tags that make the MLflow search box useful: `tags.blocks LIKE '%reactnet%'`,
    `tags.weight_bits = '1'`, `tags.target = 'cpu'`, `tags.sampler = 'tpe'`."""
    stages = genotype.stages
    return {"blocks": ",".join(sorted({s.block for s in stages})),
            "weight_bits": ",".join(str(b) for b in sorted({s.weight_bits for s in stages})),
            "activation_bits": ",".join(str(b) for b in sorted({s.activation_bits for s in stages})),
            "binary": "true" if any(s.weight_bits == 1 and s.activation_bits == 1 for s in stages) else "false",
            "target": config.latency.target, "sampler": config.sampler, "dataset": config.dataset}


def energy_breakdown(result) -> str:
    """Where a trial's energy goes: total, source, and the share of each kind of layer and bit width."""
    by_kind: dict[str, float] = {}
    for row in result.cost_rows:
        key = f"{row.get('kind', '?')} w{row.get('weight_bits', '?')}/a{row.get('input_bits', '?')}"
        by_kind[key] = by_kind.get(key, 0.0) + float(row.get("energy_pj", 0.0))
    total_pj = sum(by_kind.values())
    return json.dumps({"energy_uj": result.metrics.get("energy_uj"), "source": result.energy_source,
                       "by_layer_kind_and_bits_pj": dict(sorted(by_kind.items(), key=lambda kv: -kv[1])),
                       "share": {k: (v / total_pj if total_pj else 0.0) for k, v in by_kind.items()},
                       "per_layer": "costs.csv, column energy_pj"}, indent=2)


class TrialRecorder:
    def __init__(self, study: optuna.Study, tracker: StudyTracker, objectives: list[Objective], config: SearchConfig,
                 footprint: StudyFootprint, num_classes: int):
        self.study, self.tracker, self.objectives, self.config = study, tracker, objectives, config
        self.footprint = footprint
        self.num_classes = num_classes  # the accuracy floor is relative to chance

    def start(self, item: TrialInFlight) -> None:
        trial, genotype = item.trial, item.genotype
        trial.set_user_attr("genotype", genotype.to_dict())
        trial.set_user_attr("genotype_hash", genotype.hash())
        trial.set_user_attr("genotype_short", genotype.short())
        trial.set_user_attr("attempt", item.attempt)
        if item.continues:
            self.tracker.continue_trial(item.network, trial.number)
            return
        self.tracker.start_trial(trial.number, params=item.params, genotype_json=genotype.to_json(indent=2),
                                 genotype_short=genotype.short(), genotype_hash=genotype.hash(),
                                 tags={"bitnas.attempt": str(item.attempt), **search_tags(genotype, self.config)})

    def values(self, metrics: dict[str, float]) -> list[float]:
        return [metrics[o.metric] for o in self.objectives]

    def _tell_complete(self, trial: optuna.Trial, metrics: dict[str, float]) -> dict[str, float]:
        constraints = constraint_values(self.config.constraints, metrics, self.num_classes)
        trial.set_user_attr("metrics", metrics)
        trial.set_user_attr("constraints", constraints)
        for key, value in constraints.items():
            trial.set_constraint(key, value)
        self.study.tell(trial, self.values(metrics))
        return constraints

    def success(self, item: TrialInFlight, result) -> Reusable:
        shared = {"latency": result.latency, "energy_source": result.energy_source, "node": result.node,
                  # What the worker trained with: export rebuilds it and can check (StudyArchive.request).
                  "request_fingerprint": result.request_fingerprint}
        for key, value in shared.items():
            item.trial.set_user_attr(key, value)
        # Time inside the worker, to tell evaluation from orchestration (benchmarks/scaling.py).
        item.trial.set_user_attr("evaluation_seconds", result.seconds)
        # The learning curve: the driver sends it with later requests, for early stopping.
        item.trial.set_user_attr("epoch_val_accuracy", list(result.epoch_val_accuracy))
        if getattr(result, "stopped_early", False):
            # Its accuracy is from fewer epochs than the others': kept off the Pareto front (report.py).
            item.trial.set_user_attr("stopped_early", True)
            shared["stopped_early"] = True
        if getattr(result, "rejected", None):  # over a latency/energy/size budget: measured, never trained
            item.trial.set_user_attr("rejected_before_training", list(result.rejected))
        # The energy its evaluation used; not in `metrics`, which an identical network reuses.
        footprint = self.footprint.record(result.footprint)
        if footprint:
            item.trial.set_user_attr(FOOTPRINT_ATTR, footprint)
        self.tracker.finish_trial(
            item.trial.number, status="FINISHED", metrics={**result.metrics, **run_metrics(footprint)},
            # Under ASHA the rung's metrics are the run's step `rung`; its curve ends at the rung, not an epoch.
            epoch_accuracy=None if item.network is not None else result.epoch_val_accuracy, step=item.rung,
            files={"weights.safetensors": result.weights, "costs.csv": pd.DataFrame(result.cost_rows).to_csv(index=False),
                   "latency.json": pd.Series(result.latency).to_json(indent=2),
                   "energy.json": energy_breakdown(result)},
            tags={"bitnas.node": result.node, **({"bitnas.stopped_early": "true"} if shared.get("stopped_early") else {})},
        )
        self._tell_complete(item.trial, result.metrics)
        self.footprint.add(footprint)
        return Reusable(item.trial.number, {**shared, "metrics": result.metrics})

    def duplicate(self, item: TrialInFlight, original: Reusable) -> None:
        """The same network was already trained: reuse its result instead of training it again."""
        item.trial.set_user_attr("duplicate_of", original.number)
        for key in ("latency", "energy_source", "node", "stopped_early"):
            if key in original.user_attrs:
                item.trial.set_user_attr(key, original.user_attrs[key])
        footprint = duplicate_record(original.number) if self.footprint.enabled else None
        if footprint:  # nothing evaluated, nothing spent
            item.trial.set_user_attr(FOOTPRINT_ATTR, footprint)
        self.tracker.finish_trial(item.trial.number, status="FINISHED",
                                  metrics={**original.user_attrs["metrics"], **run_metrics(footprint)},
                                  tags={"bitnas.duplicate_of": str(original.number)})
        self._tell_complete(item.trial, original.user_attrs["metrics"])

    def failure(self, item: TrialInFlight, error: str, *, status: str = "FAILED") -> None:
        item.trial.set_user_attr("fail_reason", error[:2000])
        self.tracker.finish_trial(item.trial.number, status=status, tags={"bitnas.error": error})
        self.study.tell(item.trial, state=TrialState.FAIL, skip_if_finished=True)

    def requeue(self, params: dict, *, retry_of: int, attempt: int) -> None:
        """Run the same network again as a new trial (the next `ask()` returns it)."""
        self.study.enqueue_trial(params, user_attrs={"retry_of": retry_of, "attempt": attempt})
