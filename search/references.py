"""Reference architectures: the small hand-designed networks (XNOR-Net, Bi-Real, ReActNet,
MeliusNet, BinaryDenseNet, MobileNetV2 in float and 8 bit) evaluated once per study with the
same training budget and measurements as every trial, so that a found network is judged against
them on the same axes.

They are not Optuna trials (the sampler should not learn from networks outside its space, and
`--trials` counts searched networks only): each result is kept in a study user attribute
`reference:<name>` and in an MLflow child run tagged `bitnas.role = reference`.
"""

from __future__ import annotations

import time
from typing import Callable

import optuna
import pandas as pd

from bitnas.spaces import Genotype
from bitnas.spaces.baselines import baseline_genotype

from .interrupts import Interrupts
from .objectives import Objective
from .pareto import dominates
from .tracking import ROLE_TAG, STUDY_TAG, PARENT_TAG, StudyTracker

PREFIX = "reference:"


def recorded_references(study: optuna.Study) -> dict[str, dict]:
    return {key[len(PREFIX):]: value for key, value in study.user_attrs.items() if key.startswith(PREFIX)}


def evaluate_references(names: tuple[str, ...], geometry: dict, study: optuna.Study, tracker: StudyTracker,
                        runtime, remote_evaluate, make_request: Callable[[int], object], plugins: tuple[str, ...],
                        interrupts: Interrupts, out: Callable[[str], None]) -> None:
    """Evaluate every named reference the study does not have yet, `workers` at a time (Ray queues
    them by free CPUs). A reference that fails is reported and skipped; the search goes on."""
    done = recorded_references(study)
    todo = {name: baseline_genotype(name, **geometry) for name in names if name not in done}
    if not todo:
        return
    out(f"evaluating {len(todo)} reference architecture(s) with the trials' budget: {', '.join(todo)}")
    pending = {}
    try:
        for index, (name, genotype) in enumerate(todo.items()):
            # Negative seeds offsets keep references' training seeds apart from every trial's.
            pending[remote_evaluate.remote(genotype.to_json(), make_request(-1 - index), plugins)] = (name, genotype,
                                                                                                      time.monotonic())
        while pending:
            ready, _ = runtime.wait(list(pending), timeout=1.0)
            for ref in ready:
                with interrupts.shielded():
                    name, genotype, started = pending.pop(ref)
                    try:
                        result = runtime.get(ref)
                    except Exception as error:  # noqa: BLE001 - a reference that fails does not stop the search
                        out(f"[ref] {name} failed: {runtime.describe_error(error)}")
                        continue
                    _record(study, tracker, name, genotype, result)
                    out(f"[ref] {name:<22} " + "  ".join(f"{k} {result.metrics[k]:.4g}" for k in
                                                       ("val_accuracy", "latency_ms", "energy_uj"))
                        + f"  ({time.monotonic() - started:.1f}s)")
    finally:
        for ref in pending:
            runtime.cancel(ref)


def _record(study: optuna.Study, tracker: StudyTracker, name: str, genotype: Genotype, result) -> None:
    client = tracker.client
    found = client.search_runs([tracker.experiment_id],
                               f"tags.`{ROLE_TAG}` = 'reference' AND tags.`bitnas.reference` = '{name}'", max_results=1)
    run_id = found[0].info.run_id if found else client.create_run(
        tracker.experiment_id, run_name=f"reference-{name}",
        tags={ROLE_TAG: "reference", STUDY_TAG: tracker.study, PARENT_TAG: tracker.parent_id,
              "bitnas.reference": name, "bitnas.genotype": genotype.short()[:5000],
              "bitnas.genotype_hash": genotype.hash()}).info.run_id
    tracker.finish_trial_run(run_id, status="FINISHED", metrics=result.metrics,
                             epoch_accuracy=result.epoch_val_accuracy,
                             files={"genotype.json": genotype.to_json(indent=2),
                                    "costs.csv": pd.DataFrame(result.cost_rows).to_csv(index=False)})
    study.set_user_attr(PREFIX + name, {"metrics": result.metrics, "genotype_short": genotype.short(),
                                        "genotype_hash": genotype.hash(), "latency": result.latency})


def reference_frame(study: optuna.Study, objectives: list[Objective], trials: pd.DataFrame) -> pd.DataFrame:
    """One row per evaluated reference: its objectives, costs, and the feasible searched trials
    that dominate it (`dominated_by`)."""
    rows = []
    candidates = trials[trials["feasible"] & trials["duplicate_of"].isna()] if len(trials) else trials
    for name, record in sorted(recorded_references(study).items()):
        metrics = record["metrics"]
        point = [metrics[o.metric] for o in objectives]
        mine = [o.minimised(v) for o, v in zip(objectives, point)]
        beaten_by = [int(row["trial"]) for _, row in candidates.iterrows()
                     if dominates([o.minimised(row[o.name]) for o in objectives], mine)]
        rows.append({"reference": name, **{o.name: v for o, v in zip(objectives, point)},
                     "params": metrics.get("params"), "size_kb": metrics.get("size_kb"), "ops": metrics.get("ops"),
                     "dominated_by": beaten_by, "genotype": record["genotype_short"]})
    return pd.DataFrame(rows, columns=["reference", *[o.name for o in objectives], "params", "size_kb", "ops",
                                       "dominated_by", "genotype"])
