"""Reference architectures: the small hand-designed networks (XNOR-Net, Bi-Real, ReActNet,
MeliusNet, BinaryDenseNet, MobileNetV2 in float and 8 bit) evaluated once per study with the
same training budget and measurements as every trial, so that a found network is judged against
them on the same axes.

They are not Optuna trials (the sampler should not learn from networks outside its space, and
`--trials` counts searched networks only): each result is kept in a study user attribute
`reference:<name>` and in an MLflow child run tagged `bitnas.role = reference`. The driver runs
them in the same worker pool as the trials, first in the queue, never as a barrier before them.
"""

from __future__ import annotations

import optuna
import pandas as pd

from bitnas.spaces import Genotype
from bitnas.spaces.baselines import baseline_genotype

from .latency_check import recorded_checks, side_by_side_winners
from .objectives import Objective
from .pareto import dominates
from .tracking import StudyTracker

PREFIX = "reference:"


def recorded_references(study: optuna.Study) -> dict[str, dict]:
    return {key[len(PREFIX):]: value for key, value in study.user_attrs.items() if key.startswith(PREFIX)}


def references_to_evaluate(names: tuple[str, ...], geometry: dict, study: optuna.Study) -> dict[str, Genotype]:
    """The named references the study has no result for yet, as genotypes of the study's geometry."""
    done = recorded_references(study)
    return {name: baseline_genotype(name, **geometry) for name in names if name not in done}


def record_reference(study: optuna.Study, tracker: StudyTracker, name: str, genotype: Genotype, result,
                     footprint: dict | None = None) -> None:
    """Keep a reference's result in the study (user attribute) and in its MLflow run; `footprint`:
    the energy its evaluation used (search/footprint.py), when measured."""
    from .footprint import TRIAL_ATTR, run_metrics

    tracker.record_reference(name, genotype_json=genotype.to_json(indent=2), genotype_short=genotype.short(),
                             genotype_hash=genotype.hash(), metrics={**result.metrics, **run_metrics(footprint)},
                             epoch_accuracy=result.epoch_val_accuracy,
                             cost_csv=pd.DataFrame(result.cost_rows).to_csv(index=False))
    study.set_user_attr(PREFIX + name, {"metrics": result.metrics, "genotype_short": genotype.short(),
                                        "genotype_hash": genotype.hash(), "latency": result.latency,
                                        **({TRIAL_ATTR: footprint} if footprint else {})})


def reference_frame(study: optuna.Study, objectives: list[Objective], trials: pd.DataFrame) -> pd.DataFrame:
    """One row per evaluated reference: its objectives, costs, the feasible searched trials that
    dominate it (`dominated_by`), and where none does on the single measurements, the trials timed
    against it side by side (`side_by_side`: trial -> latency ratio) and those that then dominate
    it (`dominated_side_by_side`)."""
    rows = []
    candidates = trials[trials["feasible"] & trials["duplicate_of"].isna()] if len(trials) else trials
    checks = recorded_checks(study)  # latencies timed side by side at the end (search/latency_check.py)
    for name, record in sorted(recorded_references(study).items()):
        metrics = record["metrics"]
        point = [metrics[o.metric] for o in objectives]
        mine = [o.minimised(v) for o, v in zip(objectives, point)]
        beaten_by = [int(trial) for trial, *values in candidates[["trial", *[o.name for o in objectives]]].itertuples(index=False)
                     if dominates([o.minimised(v) for o, v in zip(objectives, values)], mine)]
        row = {"reference": name, **{o.name: v for o, v in zip(objectives, point)},
               "params": metrics.get("params"), "size_kb": metrics.get("size_kb"), "ops": metrics.get("ops"),
               "dominated_by": beaten_by, "genotype": record["genotype_short"]}
        checked = checks.get(name, {})
        row["side_by_side"] = checked
        row["dominated_side_by_side"] = [] if beaten_by else [
            trial for trial, _ in side_by_side_winners(pd.Series(row), checked, candidates, objectives)]
        rows.append(row)
    return pd.DataFrame(rows, columns=["reference", *[o.name for o in objectives], "params", "size_kb", "ops",
                                       "dominated_by", "side_by_side", "dominated_side_by_side", "genotype"])
