"""How long the study's views take to refresh as a study grows: studies of synthetic completed
trials (the default space's parameters, three objectives, a real journal file and a real MLflow
store with one run per trial), timed through the driver's own `StudyViews.refresh`.

Rows per study size:
- `refresh`: what runs after every finished trial (trials table, front, hypervolume, reference
  dominance, `pareto` tags, csv artefacts and metrics logged to MLflow);
- `refresh_final`: the same with every plot and the importance view (what the end of a search,
  and at most every 20 s of a long one, adds), and `importance`: that view alone;
- `front_hv`: the front and hypervolume alone with moocore (search/pareto.py), beside the pure-Python
  dominance loop and recursive slicing bitnas used before, on the same points (`speedup`); the old
  code is timed up to 2,000 trials, where it already takes seconds.

Goal (issue: views refresh < 2 s at 10,000 trials). Writes results/bench/views.csv.

    python benchmarks/views.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution

from bitnas.search.config import SearchConfig
from bitnas.search.importance import design_importances
from bitnas.search.objectives import objectives_for
from bitnas.search.pareto import hypervolume, pareto_indices
from bitnas.search.storage import open_storage
from bitnas.search.tracking import PARENT_TAG, ROLE_TAG, STUDY_TAG, TRIAL_TAG, StudyTracker
from bitnas.search.report import minimised_points
from bitnas.search.views import StudyViews

from _output import write_csv  # noqa: E402

OUT = Path("results/bench")
GOAL_S = 2.0
OLD_CODE_LIMIT = 2_000  # the pure-Python front is quadratic: beyond this it takes minutes


def synthetic_trials(count: int, config: SearchConfig, seed: int = 0) -> list[optuna.trial.FrozenTrial]:
    """Completed trials as the driver records them, with objectives that trade off like real ones:
    accuracy rises with width and bits, latency and energy rise with them too, plus noise."""
    rng = random.Random(seed)
    choices = config.space.choices()
    distributions = {name: CategoricalDistribution(values) for name, values in choices.items()}
    trials = []
    for _ in range(count):
        params = {name: rng.choice(values) for name, values in choices.items()}
        capacity = sum(v for k, v in params.items() if k.endswith("_width")) / 128
        bits = sum(np.log2(v) for k, v in params.items() if k.endswith("bits")) / 30
        accuracy = min(0.99, 0.6 + 0.2 * capacity + 0.15 * bits + rng.gauss(0, 0.03))
        latency = 0.05 + 0.4 * capacity * (0.3 + bits) * rng.lognormvariate(0, 0.2)
        energy = 0.5 + 8 * capacity * bits * rng.lognormvariate(0, 0.3)
        trials.append(optuna.trial.create_trial(
            values=[accuracy, latency, energy], params=params, distributions=distributions,
            user_attrs={"metrics": {"params": 1000 * capacity, "size_kb": 40 * capacity * bits, "ops": 1e6 * capacity},
                        "constraints": {}, "genotype_short": " | ".join(f"{k}={v}" for k, v in params.items())}))
    return trials


def build_study(count: int, folder: Path, config: SearchConfig):
    """A journal-file study of `count` synthetic trials and its MLflow store with one run per trial."""
    storage = open_storage(folder, None)
    study = optuna.create_study(study_name="views", storage=storage, directions=["maximize", "minimize", "minimize"])
    study.set_metric_names(list(config.objectives))
    study.add_trials(synthetic_trials(count, config))
    tracker = StudyTracker(folder, "views", {}, list(config.objectives))
    for number in range(count):  # what the driver makes for each trial: a child run found by its tags
        tracker.client.create_run(tracker.experiment_id, run_name=f"trial-{number}",
                                  tags={ROLE_TAG: "trial", STUDY_TAG: "views", TRIAL_TAG: str(number),
                                        PARENT_TAG: tracker.parent_id})
    return study, tracker


def old_front(points: list[list[float]]) -> list[int]:
    """The pairwise dominance loop bitnas used before moocore (kept here only as the baseline)."""
    def dominates(a, b):
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))
    return [i for i, p in enumerate(points)
            if not any(dominates(q, p) or (j < i and tuple(q) == tuple(p)) for j, q in enumerate(points) if j != i)]


def old_hypervolume(points: list[tuple[float, ...]], reference: tuple[float, ...]) -> float:
    """The recursive slicing bitnas used before moocore (baseline only)."""
    if len(reference) == 1:
        return reference[0] - min(p[0] for p in points)
    ordered = sorted(points, key=lambda p: p[-1])
    volume = 0.0
    for i, point in enumerate(ordered):
        upper = ordered[i + 1][-1] if i + 1 < len(ordered) else reference[-1]
        if upper > point[-1]:
            volume += (upper - point[-1]) * old_hypervolume([p[:-1] for p in ordered[: i + 1]], reference[:-1])
    return volume


def timed(run) -> tuple[float, object]:
    start = time.perf_counter()
    value = run()
    return time.perf_counter() - start, value


def measure(count: int, config: SearchConfig) -> dict:
    objectives = objectives_for(config.objectives)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        setup_s, (study, tracker) = timed(lambda: build_study(count, folder, config))
        views = StudyViews(study, tracker, objectives, config)
        first_s, _ = timed(lambda: views.refresh(final=True))  # also lists every trial's run once
        refresh_s, (frame, volume) = timed(views.refresh)
        final_s, _ = timed(lambda: views.refresh(final=True))
        importance_s, _ = timed(lambda: design_importances(study, objectives))
        reference = [o.minimised(config.hypervolume_reference[o.name]) for o in objectives]
        feasible = frame[frame["feasible"] & frame["duplicate_of"].isna()]
        points = minimised_points(feasible, objectives)
        new_s, new_volume = timed(lambda: hypervolume(points[pareto_indices(points)], reference))
        row = {"trials": count, "pareto": int(frame["pareto"].sum()), "setup_s": round(setup_s, 2),
               "first_refresh_s": round(first_s, 3), "refresh_s": round(refresh_s, 3),
               "refresh_final_s": round(final_s, 3), "importance_s": round(importance_s, 3), "front_hv_moocore_s": round(new_s, 5),
               "front_hv_old_s": None, "speedup": None, "goal_refresh_s": GOAL_S,
               "hypervolume": round(volume, 6)}
        assert abs(new_volume - volume) <= 1e-9 * max(1.0, volume), "the view and the direct computation agree"
        if count <= OLD_CODE_LIMIT:
            as_lists = points.tolist()
            old_s, old_volume = timed(lambda: old_hypervolume(
                [tuple(as_lists[i]) for i in old_front(as_lists) if all(x < r for x, r in zip(as_lists[i], reference))],
                tuple(reference)))
            assert abs(old_volume - volume) <= 1e-9 * max(1.0, volume), "old and new hypervolume agree"
            row.update(front_hv_old_s=round(old_s, 4), speedup=round(old_s / max(new_s, 1e-9), 1))
        return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 and 1,000 trials only")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # set_metric_names
    config = SearchConfig()
    sizes = [100, 1_000] if args.quick else [100, 1_000, 10_000]
    rows = []
    print(f"{'trials':>7} {'pareto':>6} {'refresh s':>10} {'with plots s':>13} {'importance s':>13} {'front+hv s':>11} "
          f"{'old code s':>11} {'speedup':>8}", flush=True)
    for count in sizes:
        row = measure(count, config)
        rows.append(row)
        old = f"{row['front_hv_old_s']:.4f}" if row["front_hv_old_s"] is not None else "-"
        speedup = f"{row['speedup']:.0f}x" if row["speedup"] is not None else "-"
        print(f"{count:>7,} {row['pareto']:>6} {row['refresh_s']:>10.3f} {row['refresh_final_s']:>13.3f} "
              f"{row['importance_s']:>13.3f} "
              f"{row['front_hv_moocore_s']:>11.5f} {old:>11} {speedup:>8}", flush=True)
    largest = rows[-1]
    verdict = "met" if largest["refresh_s"] < GOAL_S else "NOT met"
    print(f"\ngoal: refresh < {GOAL_S:g} s at {largest['trials']:,} trials: {largest['refresh_s']:.3f} s, {verdict}")
    write_csv(OUT / "views.csv", rows)
    print(f"wrote {OUT / 'views.csv'}")
    if args.json:
        print(json.dumps({"rows": rows}))
    sys.exit(0)


if __name__ == "__main__":
    main()
