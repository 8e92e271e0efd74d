"""Which sampler finds the better front? NSGA-II, TPE and random search at equal trial budgets,
three seeds each, on the default task, through the real `bitnas search` command: the final
hypervolume (one fixed reference point, the config's) and how many of the small reference
architectures each front dominates (they are trained and measured once, with the same budget),
and the energy each search used to find its front (the study's footprint, search/footprint.py).

Goal (issue 7): the default sampler's median hypervolume >= 1.1x random's, and every small
reference architecture dominated by a found network. Writes results/bench/search_quality.csv and
results/bench/search_quality.png (the fronts).

    python benchmarks/search_quality.py [--trials N] [--epochs E] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import optuna  # noqa: E402

from bitnas.evaluators import load_dataset  # noqa: E402
from bitnas.evaluators.evaluate import evaluate  # noqa: E402
from bitnas.search.config import SearchConfig  # noqa: E402
from bitnas.search.requests import eval_request  # noqa: E402
from bitnas.search.objectives import objectives_for  # noqa: E402
from bitnas.search.pareto import dominates  # noqa: E402
from bitnas.search.report import front_hypervolume, trials_frame  # noqa: E402

from _output import write_csv  # noqa: E402

OUT = Path("results/bench")
SAMPLERS = ("nsga2", "tpe", "random")
SEEDS = (0, 1, 2)


def reference_points(epochs: float, objectives, config: SearchConfig) -> dict[str, list[float]]:
    """Each small reference architecture trained and measured like a trial (seed 0's split)."""
    from bitnas.spaces.baselines import small_baselines

    data = load_dataset(config.dataset, 0)
    config = config.model_copy(update={"seed": 0, "training": config.training.model_copy(update={"epochs": epochs})})
    request = eval_request(config, 0)
    points = {}
    for name, genotype in small_baselines(input_size=data.input_size, in_channels=data.in_channels,
                                          num_classes=data.num_classes).items():
        result = evaluate(genotype.to_json(), request)
        points[name] = [result.metrics[o.metric] for o in objectives]
        print(f"  reference {name:<22} " + "  ".join(f"{o.name} {v:.4g}" for o, v in zip(objectives, points[name])),
              flush=True)
    return points


def run_study(folder: Path, sampler: str, seed: int, trials: int, epochs: float, objectives, config) -> dict:
    results = folder / f"{sampler}-{seed}"
    # The benchmark trains the seven references once itself; each study need not repeat its two.
    no_references = folder / "no_references.yaml"
    no_references.write_text("references: []\n")
    command = ["bitnas", "search", "--results", str(results), "--study", "quality", "--sampler", sampler,
               "--seed", str(seed), "--trials", str(trials), "--epochs", str(epochs),
               "--config", str(no_references)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{sampler} seed {seed} failed:\n{done.stderr[-2000:]}")
    study = optuna.load_study(study_name="quality", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(results / "optuna.journal"))))
    frame = trials_frame(study, objectives)
    front = frame[frame["pareto"]]
    # What the search itself used to find this front (search/footprint.py); None if not measured.
    footprint = study.user_attrs.get("footprint_total") or {}
    return {"sampler": sampler, "seed": seed, "trials": len(frame), "footprint_wh": footprint.get("energy_wh"),
            "hypervolume": front_hypervolume(frame, objectives, config.hypervolume_reference),
            "front": [[row[o.name] for o in objectives] for _, row in front.iterrows()]}


def dominated_references(front: list[list[float]], references: dict[str, list[float]], objectives) -> list[str]:
    def minimised(point):
        return [o.minimised(v) for o, v in zip(objectives, point)]

    return [name for name, point in references.items()
            if any(dominates(minimised(found), minimised(point)) for found in front)]


def plot(rows: list[dict], references: dict[str, list[float]], objectives, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5), dpi=120)
    colours = {"nsga2": "tab:blue", "tpe": "tab:orange", "random": "tab:grey"}
    for row in rows:
        points = sorted(row["front"], key=lambda p: p[1])
        axis.plot([p[1] for p in points], [p[0] for p in points], marker="o", ms=3, alpha=0.7,
                  color=colours[row["sampler"]], label=row["sampler"] if row["seed"] == 0 else None)
    for name, point in references.items():
        axis.scatter(point[1], point[0], marker="*", s=120, color="crimson")
        axis.annotate(name, (point[1], point[0]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    axis.set_xscale("log")
    axis.set_xlabel(objectives[1].label)
    axis.set_ylabel(objectives[0].label)
    axis.set_title("Pareto fronts by sampler (3 seeds each); stars: reference architectures")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=SearchConfig().trials)
    parser.add_argument("--epochs", type=float, default=SearchConfig().training.epochs)
    parser.add_argument("--quick", action="store_true", help="12 trials of 0.5 epoch per study")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON object")
    args = parser.parse_args()
    trials, epochs = (12, 0.5) if args.quick else (args.trials, args.epochs)
    config = SearchConfig()
    objectives = objectives_for(config.objectives)
    print(f"reference architectures ({epochs:g} epoch(s), like every trial):", flush=True)
    references = reference_points(epochs, objectives, config)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for sampler in SAMPLERS:
            for seed in SEEDS:
                row = run_study(Path(scratch), sampler, seed, trials, epochs, objectives, config)
                row["dominated"] = dominated_references(row["front"], references, objectives)
                rows.append(row)
                print(f"  {sampler:<6} seed {seed}: hypervolume {row['hypervolume']:.4g}, dominates "
                      f"{len(row['dominated'])}/{len(references)} references", flush=True)
    medians = {s: statistics.median(r["hypervolume"] for r in rows if r["sampler"] == s) for s in SAMPLERS}
    default = config.sampler
    print(f"\n{'sampler':<8} {'median HV':>10} {'vs random':>9} {'references dominated (per seed)':>32} "
          f"{'Wh per front (per seed)':>28}")
    for sampler in SAMPLERS:
        counts = [len(r["dominated"]) for r in rows if r["sampler"] == sampler]
        energy = [round(r["footprint_wh"], 2) if r["footprint_wh"] is not None else None for r in rows
                  if r["sampler"] == sampler]
        print(f"{sampler:<8} {medians[sampler]:>10.4g} {medians[sampler] / medians['random']:>8.2f}x "
              f"{str(counts):>32} {str(energy):>28}")
    print(f"default sampler {default!r}: {medians[default] / medians['random']:.2f}x random's median hypervolume "
          f"(goal >= 1.1x); reference point {config.hypervolume_reference}")
    write_csv(OUT / "search_quality.csv",
              [{"sampler": row["sampler"], "seed": row["seed"], "trials": row["trials"], "epochs": epochs,
                "hypervolume": round(row["hypervolume"], 4), "references_dominated": len(row["dominated"]),
                "references": len(references),
                "footprint_wh": round(row["footprint_wh"], 4) if row["footprint_wh"] is not None else None}
               for row in rows])
    plot(rows, references, objectives, OUT / "search_quality.png")
    print(f"wrote {OUT / 'search_quality.csv'} and {OUT / 'search_quality.png'}")
    if args.json:
        print(json.dumps({"median_hypervolume": medians, "default_sampler": default,
                          "default_over_random": medians[default] / medians["random"],
                          "references": references,
                          "dominated": {f"{r['sampler']}-{r['seed']}": r["dominated"] for r in rows},
                          "footprint_wh": {f"{r['sampler']}-{r['seed']}": r["footprint_wh"] for r in rows}}))


if __name__ == "__main__":
    main()
