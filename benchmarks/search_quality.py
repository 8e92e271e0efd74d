"""Which search strategy finds the better front in the same wall time? Each strategy (how a trial
is evaluated, how trials are scheduled, which sampler proposes them) runs real `bitnas search`
studies of `--minutes` each on this machine (`time_budget_s`: Ray's start-up and a supernet's
training count), their reported fronts evaluated at the same final budget (`training.epochs` from
scratch: the trials themselves where they already are at that budget, else up to 8 finalists
retrained), with one fixed reference point. Per strategy: median and range of the hypervolume
over seeds, its ratio to random search from scratch in the same run, and how many of the small
reference architectures (all 7, trained once at the final budget) each front dominates.

Goals (issue 13): the default strategy's median hypervolume >= 1.15x random search from scratch,
and its front dominates all 7 small references in at least 4 of 5 seeds. A reference counts as
dominated as the search judges it: on the single measurements, or with the latency of its closest
front members timed against it side by side (search/latency_check.py).

The references are trained once, on seed 0's split. With `--own-seed-references` each front is
also judged against the references' accuracy when trained at its own study's seed (that seed's
split and initialisation, as the study's trials are; latency and energy stay the run's): at one
epoch a reference's accuracy moves by a point or two between seeds (the 8-bit MobileNetV2 read
0.936-0.963), which is as much as separates it from its cheaper neighbours
(benchmarks/neighbour_spread.py).

Two hypervolumes, both with one reference point for the whole run:
- at the search's configured point (accuracy 0, 10 ms, 100 uJ): the figure the search logs. It
  saturates: every network here lies far inside that box, so it grows little with anything but the
  best accuracy. No front can exceed 1000 (accuracy 1 at no cost), nor in practice the volume of
  the run's ideal point (the best accuracy, latency and energy any front or reference reached, as
  one network), printed as the ceiling;
- in the hand designs' box (`box HV`): the references' worst accuracy, latency and energy as the
  reference point, latency and energy on log scales (a network twice as fast gains the same
  wherever it lies). It measures how much of the region where a network beats the weakest hand
  design in every objective a front covers, which is what a user runs the search for.

    python benchmarks/search_quality.py --quick     # 3-minute studies, 3 seeds, every strategy
    python benchmarks/search_quality.py             # 10-minute studies, 5 seeds, random from scratch
                                                     # and the quick run's two best strategies
    python benchmarks/search_quality.py --strategies random-scratch,supernet-tpe --minutes 5 --seeds 0,1
    python benchmarks/search_quality.py --quick --strategies random-scratch,neighbours-scratch --tag neighbours

Resumable: every finished study leaves its row under results/bench/search_quality/<run>/ and is
never run again (kill it and run the same command to go on). The rows, the side-by-side verdicts,
the references' points and the strategies' settings are tracked by git, so a run can go on in a
later checkout: on the same kind of CPU (the references' latencies are that CPU's) and with the
same strategies (settings.json: a strategy whose settings have changed since, e.g. with the
default space, runs no further study; its finished rows are still read into the table). Writes
results/bench/search_quality.csv (one row per study) and results/bench/search_quality.png (the
fronts as points).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import optuna  # noqa: E402
import yaml  # noqa: E402

from bitnas.evaluators import load_dataset  # noqa: E402
from bitnas.evaluators.engine.isa import isa_path  # noqa: E402
from bitnas.evaluators.evaluate import evaluate  # noqa: E402
from bitnas.evaluators.latency import cpu_model  # noqa: E402
from bitnas.search.config import SearchConfig  # noqa: E402
from bitnas.search.objectives import objectives_for  # noqa: E402
from bitnas.search.pareto import dominates, hypervolume  # noqa: E402
from bitnas.search.report import front_hypervolume, trials_frame  # noqa: E402
from bitnas.search.requests import eval_request  # noqa: E402
from bitnas.spaces.space import SpaceConfig  # noqa: E402

from _output import write_csv  # noqa: E402

OUT = Path("results/bench")
BASELINE = "random-scratch"
# The default space's stages before widths 32/64/128 were added, and without the stem's max pool
# (the strategies measured in it keep it).
EARLIER_SPACE = {"stages": [{"stride": 1, "widths": [8, 16, 24]}, {"stride": 2, "widths": [16, 24, 32, 48]},
                            {"stride": 2, "widths": [32, 48, 64]}, {"stride": 1, "widths": [48, 64, 96], "depths": [0, 1, 2]}],
                 "stem_pools": [False]}
# The default space's stages since reactnet-scratch (widths 32/64/128).
WIDENED_STAGES = [{"stride": 1, "widths": [8, 16, 24, 32]}, {"stride": 2, "widths": [16, 24, 32, 48, 64]},
                  {"stride": 2, "widths": [32, 48, 64, 128]}, {"stride": 1, "widths": [48, 64, 96], "depths": [0, 1, 2]}]
# Strategy -> the config keys it sets (everything else is the default config).
STRATEGIES = {
    "random-scratch": {"sampler": "random", "evaluation": "scratch", "schedule": "none", "reference_neighbours": 0},
    "asha-scratch": {"sampler": "random", "evaluation": "scratch", "schedule": "asha", "reference_neighbours": 0},
    "supernet-random": {"sampler": "random", "evaluation": "supernet", "schedule": "none", "reference_neighbours": 0},
    "supernet-tpe": {"sampler": "tpe", "evaluation": "supernet", "schedule": "none", "reference_neighbours": 0},
    "supernet-nsga2": {"sampler": "nsga2", "evaluation": "supernet", "schedule": "none", "reference_neighbours": 0},
    # Random search whose first trials are the cheaper one-step neighbours of bireal_small and
    # mobilenetv2_int8_small (search/neighbours.py), in the space both lie in: the default strategy
    # until the box run below chose reactnet-scratch. The references are evaluated in the study too
    # (it is where the neighbours come from), on the study's own clock, as the default search does.
    "neighbours-scratch": {"sampler": "random", "evaluation": "scratch", "schedule": "none", "reference_neighbours": 4,
                           "references": ["bireal_small", "mobilenetv2_int8_small"], "space": EARLIER_SPACE},
    # Random search after two cheaper neighbours of every small reference that space can express
    # (the float MobileNetV2 too, which no neighbours-scratch front had dominated on an AVX2 EPYC).
    # Measured on a Zen 4 EPYC: 1.06x random, the same as neighbours-scratch (results/README.md).
    "allrefs-scratch": {"sampler": "random", "evaluation": "scratch", "schedule": "none", "reference_neighbours": 2,
                        "references": ["bireal_small", "mobilenetv2_small", "mobilenetv2_int8_small"],
                        "space": EARLIER_SPACE},
    # neighbours-scratch in a space widened to hold reactnet_small too (stage widths 32, 64 and 128:
    # a ReActNet block is cheap only where the width doubles at a stride, and the earlier space
    # cannot chain 32/64/128), with its 4 cheaper neighbours queued after the other two references'
    # 8: aimed at the one reference no front had dominated. The default from --quick --tag box
    # (references dominated 5/5/5 of 7 per seed against 3/2/5; box hypervolume 2.16x random's) until
    # pool-scratch; it keeps that space, without the stem's max pool.
    "reactnet-scratch": {"sampler": "random", "evaluation": "scratch", "schedule": "none", "reference_neighbours": 4,
                         "references": ["bireal_small", "mobilenetv2_int8_small", "reactnet_small"],
                         "space": {"stages": WIDENED_STAGES, "stem_pools": [False]}},
    # reactnet-scratch in the default space, which since offers a max pool after the stem (every
    # later stage at half the side), and with that pool as each reference's first neighbour: the
    # engine runs the pool natively since (in torch it cost more than the stage it shrank), and so
    # pooled references measured 0.58-0.68x their latency side by side, reactnet_small's twin
    # 0.836 / 0.845 accurate at seeds 0 / 1 against its 0.789 / 0.795. The default since --tag pool.
    # --tag avx2 (a Zen 3 EPYC, 4/8-bit layers on the float GEMM): all 7 references in 4 of 5 seeds.
    "pool-scratch": {"sampler": "random", "evaluation": "scratch", "schedule": "none", "reference_neighbours": 4,
                     "references": ["bireal_small", "mobilenetv2_int8_small", "reactnet_small"]},
    # pool-scratch, then two grown twins of each reference (the pooled twin with one or two
    # parameters grown back while still cheaper, search/neighbours.py `grown_twins`): aimed at the
    # 8-bit MobileNetV2, the one reference pool-scratch left undominated (3 of 5 seeds), which the
    # pool costs a point or two of accuracy. Added to --tag pool: references dominated 6/7/6/7/5
    # against pool-scratch's 6/7/6/7/6, box hypervolume 1.25x random's against 1.31x, so not the default.
    "grown-scratch": {"sampler": "random", "evaluation": "scratch", "schedule": "none", "reference_neighbours": 4,
                      "grown_neighbours": 2, "references": ["bireal_small", "mobilenetv2_int8_small", "reactnet_small"]},
    # neighbours-scratch's first trials, then Pareto local search: half the proposals are one-step
    # neighbours of the study's current front (search/local_search.py), the other half random.
    "local-scratch": {"sampler": "local", "evaluation": "scratch", "schedule": "none", "reference_neighbours": 4,
                      "references": ["bireal_small", "mobilenetv2_int8_small"], "space": EARLIER_SPACE},
}
# The keys that name a strategy besides `references` (where its neighbours come from) and `space`
# (where given, it replaces the default space; otherwise a strategy searches the default space).
STRATEGY_KEYS = ("sampler", "evaluation", "schedule", "reference_neighbours", "grown_neighbours")
# Keys added after earlier runs recorded their strategies' settings, with the value every strategy
# had before: a strategy that does not set one runs with it, and its recorded settings leave it
# out, so runs recorded before the key existed still match (check_settings).
LATER_KEYS = {"grown_neighbours": 0}
# `--trials` sizes the guided samplers (TPE's start-up, NSGA-II's population), so for them it is
# set near the trials the time allows here (about 25 a minute with a supernet, measured); random
# search needs no size, and the time budget is what ends every study.
GUIDED_TRIALS_PER_MINUTE, UNSIZED_TRIALS = 25, 10_000
UNSIZED_SAMPLERS = ("random", "local")  # local search's random half and its front need no budget either
COLOURS = {"random-scratch": "tab:grey", "asha-scratch": "tab:green", "supernet-random": "tab:purple",
           "supernet-tpe": "tab:orange", "supernet-nsga2": "tab:blue", "neighbours-scratch": "tab:red",
           "local-scratch": "tab:brown", "allrefs-scratch": "tab:pink",
           "reactnet-scratch": "tab:olive", "pool-scratch": "tab:cyan", "grown-scratch": "tab:blue"}


def reference_points(folder: Path, objectives, config: SearchConfig, cpu: str | None, seed: int = 0) -> dict[str, list[float]]:
    """Each small reference architecture trained at the final budget and measured like a trial, on
    `seed`'s split (seed 0's: the run's references); kept in the run's folder, so a resumed run
    does not train them again. Seed 0's latency is that CPU's: a run measured on one CPU runs no
    study on another (`cpu` None: none is to run, the table is only read back); of another seed's
    only the accuracy is used."""
    from bitnas.spaces.baselines import small_baselines

    path = folder / ("references.json" if seed == 0 else f"references-seed{seed}.json")
    if path.exists():
        saved = json.loads(path.read_text())
        if "points" not in saved:  # written before the CPU was kept with them
            return saved
        if cpu is not None and seed == 0 and saved["cpu"] != cpu:
            sys.exit(f"{folder} was measured on {saved['cpu']}, this machine is {cpu}: its latencies would not "
                     f"compare; run it here under another --tag (or delete {folder})")
        return saved["points"]
    if cpu is None:
        sys.exit(f"{path} is missing: run this on the CPU {folder} was measured on")
    data = load_dataset(config.dataset, seed)
    request = eval_request(config.model_copy(update={"seed": seed}), 0)
    points = {}
    for name, genotype in small_baselines(input_size=data.input_size, in_channels=data.in_channels,
                                          num_classes=data.num_classes).items():
        result = evaluate(genotype.to_json(), request)
        points[name] = [result.metrics[o.metric] for o in objectives]
        print(f"  reference {name:<22} seed {seed} " + "  ".join(f"{o.name} {v:.4g}" for o, v in zip(objectives, points[name])),
              flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cpu": cpu, "points": points}))
    return points


def load_quality_study(results: Path) -> optuna.Study:
    """The study a benchmark run of `bitnas search` left in `results`."""
    return optuna.load_study(study_name="quality", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(results / "optuna.journal"))))


def study_folder(folder: Path, strategy: str, seed: int) -> Path:
    """Where one study of the run lives (its results; row.json once it has finished)."""
    return folder / f"{strategy}-{seed}"


def cpu_label() -> str:
    return f"{cpu_model()} ({isa_path()})"


def run_study(folder: Path, strategy: str, seed: int, minutes: float, objectives, config: SearchConfig) -> dict:
    """One study, or its row from an earlier run of the benchmark."""
    results = study_folder(folder, strategy, seed)
    done_file = results / "row.json"
    if done_file.exists():
        return json.loads(done_file.read_text())
    if results.exists():  # a study cut short: it starts again, so that its wall time is its own
        shutil.rmtree(results)
    results.mkdir(parents=True)
    keys = strategy_keys(strategy)
    # The benchmark trains the seven references once itself; a study need not repeat its two.
    settings = {"references": [], **keys, "final_epochs": config.training.epochs}
    (results / "strategy.yaml").write_text(yaml.safe_dump(settings))
    trials = UNSIZED_TRIALS if keys["sampler"] in UNSIZED_SAMPLERS else int(GUIDED_TRIALS_PER_MINUTE * minutes)
    command = ["bitnas", "search", "--results", str(results), "--study", "quality", "--seed", str(seed),
               "--trials", str(trials), "--time-budget", str(60 * minutes), "--config", str(results / "strategy.yaml")]
    begun = time.monotonic()
    with (results / "search.log").open("w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, text=True)
    seconds = time.monotonic() - begun
    if done.returncode != 0:
        sys.exit(f"{strategy} seed {seed} failed (exit {done.returncode}); see {results / 'search.log'}:\n"
                 + (results / "search.log").read_text()[-2000:])
    study = load_quality_study(results)
    frame = trials_frame(study, objectives)
    front = frame[frame["pareto"]]
    row = {"strategy": strategy, "seed": seed, "minutes": minutes, "trials": int((frame["fidelity"] != "final").sum()),
           "finalists": int((frame["fidelity"] == "final").sum()), "wall_s": round(seconds, 1),
           "hypervolume": front_hypervolume(frame, objectives, config.hypervolume_reference),
           "front": [[float(row[o.name]) for o in objectives] for _, row in front.iterrows()],
           "cpu": cpu_label()}
    done_file.write_text(json.dumps(row))
    return row


def strategy_keys(strategy: str) -> dict:
    """The config keys a strategy's studies run with (LATER_KEYS it does not set at their old value)."""
    return {**LATER_KEYS, **STRATEGIES[strategy]}


def effective_settings(strategy: str) -> dict:
    """What a strategy's studies run with, the default space written out: a run resumed after the
    defaults changed would otherwise mix two different strategies under one name."""
    keys = strategy_keys(strategy)
    space = SpaceConfig.model_validate(keys["space"]) if "space" in keys else SearchConfig().space
    return strategy_settings(keys, keys.get("references", []), space)


def strategy_settings(keys, references, space: SpaceConfig) -> dict:
    """The settings that make a strategy, from a strategy's keys or a config alike."""
    written = [key for key in STRATEGY_KEYS if key not in LATER_KEYS or keys[key] != LATER_KEYS[key]]
    return {**{key: keys[key] for key in written}, "references": list(references),
            "space": space.model_dump(mode="json")}


def check_settings(folder: Path, strategies: list[str]) -> None:
    """Record the settings of each strategy about to run studies in the run's folder, or refuse to go
    on where they changed (finished studies are only read back, whatever the code says now)."""
    path = folder / "settings.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    for strategy in strategies:
        now = effective_settings(strategy)
        if strategy in saved and saved[strategy] != now:
            changed = [key for key in now if saved[strategy].get(key) != now[key]]
            sys.exit(f"{strategy} has changed since {folder} began ({', '.join(changed)}): its studies would not "
                     f"compare; run it under another --tag (or delete {folder})")
        saved[strategy] = now
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(saved, indent=1))


def is_default(strategy: str, config: SearchConfig) -> bool:
    """Whether a strategy is what `bitnas search` does with `config` (its references compared only
    where the strategy names some: they are where its neighbours come from)."""
    references = config.references if "references" in STRATEGIES[strategy] else []
    ran_by_config = strategy_settings({key: getattr(config, key) for key in STRATEGY_KEYS}, references, config.space)
    return effective_settings(strategy) == ran_by_config


def box_reference(references: dict[str, list[float]], objectives) -> list[float]:
    """The reference point of `box HV`: the hand designs' worst value of each objective."""
    points = [[o.minimised(v) for o, v in zip(objectives, point)] for point in references.values()]
    return [max(column) for column in zip(*points)]


def box_hypervolume(front: list[list[float]], box: list[float], objectives) -> float:
    """Hypervolume of `front` bounded by `box` (minimised coordinates), with every minimised cost
    (latency, energy, ...) on a log scale: the volume is then a product of accuracy gained over the
    weakest design and the factors by which the costs beat the dearest ones."""
    def scaled(value: float, objective) -> float:
        return value if objective.direction == "maximize" else math.log(max(value, 1e-12))

    points = [[scaled(o.minimised(v), o) for o, v in zip(objectives, point)] for point in front]
    return hypervolume(points, [scaled(v, o) for o, v in zip(objectives, box)])


def ceiling(rows: list[dict], references: dict[str, list[float]], objectives, reference: dict[str, float]) -> float:
    """The configured hypervolume of the run's ideal point: the best value of every objective over
    all fronts and references, as one network. No front of this run scores more."""
    points = [p for row in rows for p in row["front"]] + list(references.values())
    ideal = [min(o.minimised(p[i]) for p in points) for i, o in enumerate(objectives)]
    return hypervolume([ideal], [o.minimised(reference[o.name]) for o in objectives])


def dominated(folder: Path, row: dict, references: dict[str, list[float]], objectives, config: SearchConfig,
              kept_in: str) -> list[str] | None:
    """The references a study's front dominates on its single measurements, plus those it dominates
    with latency timed side by side; None where the side-by-side check can be neither read nor run."""
    single = dominated_references(row["front"], references, objectives)
    timed = dominated_side_by_side(folder, row, references, single, objectives, config, kept_in)
    return None if timed is None else single + timed


def dominated_references(front: list[list[float]], references: dict[str, list[float]], objectives) -> list[str]:
    def minimised(point):
        return [o.minimised(v) for o, v in zip(objectives, point)]

    return [name for name, point in references.items()
            if any(dominates(minimised(found), minimised(point)) for found in front)]


def dominated_side_by_side(folder: Path, row: dict, references: dict[str, list[float]], already: list[str],
                           objectives, config: SearchConfig, kept_in: str = "side_by_side.json") -> list[str] | None:
    """The references this study's front dominates once latency is timed side by side, as the
    search itself judges them (search/latency_check.py): for each reference the single
    measurements leave undominated (not in `already`), its closest front members are timed
    against it. Kept in the study's folder (`kept_in`), so a rerun of the benchmark does not time
    them again. None where neither that file nor the study is here (a row from an earlier checkout)."""
    import pandas as pd

    from bitnas.search.latency_check import candidates, latency_ratios, side_by_side_winners
    from bitnas.spaces import Genotype
    from bitnas.spaces.baselines import baseline_genotype

    results = study_folder(folder, row["strategy"], row["seed"])
    path = results / kept_in
    if path.exists():
        return json.loads(path.read_text())
    if not (results / "optuna.journal").exists():  # a row carried over from another checkout without its check
        return None
    study = load_quality_study(results)
    frame = trials_frame(study, objectives)
    front = frame[frame["pareto"]]
    undominated = [name for name in references if name not in already]
    table = pd.DataFrame([{"reference": name, **{o.name: v for o, v in zip(objectives, references[name])},
                           "dominated_by": []} for name in undominated])
    geometry = study.user_attrs["geometry"]
    won = []
    for name, trial_numbers in candidates(table, front, objectives).items():
        genotypes = [Genotype.from_dict(study.trials[n].user_attrs["genotype"]) for n in trial_numbers]
        ratios = dict(zip(trial_numbers, latency_ratios(baseline_genotype(name, **geometry), genotypes, config.latency)))
        if side_by_side_winners(table[table["reference"] == name].iloc[0], ratios, front, objectives):
            won.append(name)
    path.write_text(json.dumps(won))
    return won


def plot(rows: list[dict], references: dict[str, list[float]], objectives, path: Path, minutes: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5), dpi=120)
    labelled = set()
    for row in rows:
        points = row["front"]
        axis.scatter([p[1] for p in points], [p[0] for p in points], s=14, alpha=0.7,
                     color=COLOURS.get(row["strategy"], "black"),
                     label=row["strategy"] if row["strategy"] not in labelled else None)
        labelled.add(row["strategy"])
    for name, point in references.items():
        axis.scatter(point[1], point[0], marker="*", s=120, color="crimson")
        axis.annotate(name, (point[1], point[0]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    axis.set_xscale("log")
    axis.set_xlabel(objectives[1].label)
    axis.set_ylabel(objectives[0].label)
    axis.set_title(f"Reported fronts of {minutes:g}-minute searches (every seed); stars: references")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def best_of_quick(count: int) -> list[str]:
    """The `count` strategies with the highest median hypervolume in the last quick run's CSV."""
    path = OUT / "search_quality_quick.csv"
    if not path.exists():
        sys.exit(f"{path} not found: run --quick first, or name --strategies")
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    medians = {s: statistics.median(float(r["hypervolume"]) for r in rows if r["strategy"] == s)
               for s in {r["strategy"] for r in rows}}
    return sorted((s for s in medians if s != BASELINE), key=medians.get, reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3-minute studies, 3 seeds, every strategy")
    parser.add_argument("--minutes", type=float, help="wall time of each study (default 3 quick, 10 full)")
    parser.add_argument("--seeds", help="comma-separated (default 0,1,2 quick, 0-4 full)")
    parser.add_argument("--strategies", help=f"comma-separated, of: {', '.join(STRATEGIES)}")
    parser.add_argument("--tag", help="a separate run: its studies under <run>-TAG, its table in search_quality_TAG.csv "
                                      "(a comparison of a few strategies that leaves the quick and full tables as they are)")
    parser.add_argument("--own-seed-references", action="store_true",
                        help="also count the references each front dominates when they are trained at its study's "
                             "seed (its split and initialisation) instead of seed 0's (needs the studies' journals)")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON object")
    args = parser.parse_args()
    if args.tag is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", args.tag):
        sys.exit(f"--tag: 1-40 letters, digits, '_' or '-' (got {args.tag!r})")
    minutes = args.minutes or (3.0 if args.quick else 10.0)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else ([0, 1, 2] if args.quick else [0, 1, 2, 3, 4])
    if args.strategies:
        strategies = args.strategies.split(",")
    else:
        strategies = list(STRATEGIES) if args.quick else [BASELINE, *best_of_quick(2)]
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        sys.exit(f"--strategies: unknown: {', '.join(unknown)} (known: {', '.join(STRATEGIES)})")
    if BASELINE not in strategies:
        strategies.insert(0, BASELINE)
    config = SearchConfig()
    objectives = objectives_for(config.objectives)
    run_name = f"{'quick' if args.quick else 'full'}-{minutes:g}min" + (f"-{args.tag}" if args.tag else "")
    folder = OUT / "search_quality" / run_name
    cpu = cpu_label()
    print(f"{len(strategies)} strategies x {len(seeds)} seeds, {minutes:g}-minute studies; fronts at "
          f"{config.training.epochs:g} epoch(s) from scratch; {folder}", flush=True)
    print(f"reference architectures ({config.training.epochs:g} epoch(s) from scratch):", flush=True)
    pending = [s for s in strategies if any(not (study_folder(folder, s, seed) / "row.json").exists() for seed in seeds)]
    check_settings(folder, pending)
    references = reference_points(folder, objectives, config, cpu if pending else None)
    own_seed_references = {0: references} if args.own_seed_references else {}
    for seed in seeds if args.own_seed_references else []:
        if seed != 0:
            trained = reference_points(folder, objectives, config, cpu, seed)
            # only the accuracy depends on the seed; latency and energy are the network's, so they
            # stay the run's (a second measurement would differ by the machine's noise alone)
            own_seed_references[seed] = {name: [trained[name][i] if o.metric == "val_accuracy" else value
                                                for i, (o, value) in enumerate(zip(objectives, point))]
                                         for name, point in references.items()}
    rows = []
    for seed in seeds:  # seed-major: a run stopped early still compares every strategy
        for strategy in strategies:
            row = run_study(folder, strategy, seed, minutes, objectives, config)
            row["dominated"] = dominated(folder, row, references, objectives, config, "side_by_side.json")
            if row["dominated"] is None:
                sys.exit(f"{study_folder(folder, strategy, seed) / 'side_by_side.json'} is missing and so is the study "
                         f"it would be timed from: delete {study_folder(folder, strategy, seed)} to run it again")
            own = own_seed_references.get(seed)
            row["dominated_own_seed"] = (None if own is None else row["dominated"] if seed == 0 else
                                         dominated(folder, row, own, objectives, config, "side_by_side_own_seed.json"))
            rows.append(row)
            print(f"  {strategy:<16} seed {seed}: {row['trials']:>4} trials, {row['finalists']} finalists, "
                  f"{row['wall_s']:.0f} s; hypervolume {row['hypervolume']:.4g}, dominates "
                  f"{len(row['dominated'])}/{len(references)} references"
                  + ("" if own is None else f" ({_count(row['dominated_own_seed'])}/{len(own)} trained at seed {seed})"),
                  flush=True)
    box = box_reference(references, objectives)
    for row in rows:
        row["box_hypervolume"] = box_hypervolume(row["front"], box, objectives)
    volumes = {s: [r["hypervolume"] for r in rows if r["strategy"] == s] for s in strategies}
    medians = {s: statistics.median(v) for s, v in volumes.items()}
    boxes = {s: [r["box_hypervolume"] for r in rows if r["strategy"] == s] for s in strategies}
    box_medians = {s: statistics.median(v) for s, v in boxes.items()}
    top = ceiling(rows, references, objectives, config.hypervolume_reference)
    default = next((name for name in [*strategies, *STRATEGIES] if is_default(name, config)), None)
    print(f"\n{'strategy':<18} {'trials':>6} {'median HV':>10} {'range':>13} {'vs random':>9} "
          f"{'box HV':>7} {'range':>11} {'vs random':>9}  references dominated (per seed)")
    for strategy in strategies:
        counts = [len(r["dominated"]) for r in rows if r["strategy"] == strategy]
        trials = statistics.median(r["trials"] for r in rows if r["strategy"] == strategy)
        low, high = min(volumes[strategy]), max(volumes[strategy])
        box_low, box_high = min(boxes[strategy]), max(boxes[strategy])
        own_counts = [_count(r["dominated_own_seed"]) for r in rows if r["strategy"] == strategy]
        print(f"{strategy:<18} {trials:>6.0f} {medians[strategy]:>10.4g} {f'{low:.4g}-{high:.4g}':>13} "
              f"{medians[strategy] / medians[BASELINE]:>8.2f}x {box_medians[strategy]:>7.3f} "
              f"{f'{box_low:.3f}-{box_high:.3f}':>11} {_ratio(box_medians[strategy], box_medians[BASELINE]):>9}  {counts}"
              + (f"; trained at each study's seed [{', '.join(own_counts)}]" if own_seed_references else ""))
    print(f"default strategy {default!r}; reference point {config.hypervolume_reference}: no front of this run can "
          f"exceed {top:.4g} ({top / medians[BASELINE]:.2f}x random's median); box HV's reference point (the "
          f"references' worst) {dict(zip(config.objectives, (abs(v) for v in box)))}; cpu {cpu}")
    csv_path = OUT / (f"search_quality_{args.tag}.csv" if args.tag else
                      "search_quality_quick.csv" if args.quick else "search_quality.csv")
    write_csv(csv_path, [{"strategy": r["strategy"], "seed": r["seed"], "minutes": minutes, "trials": r["trials"],
                          "finalists": r["finalists"], "wall_s": r["wall_s"], "hypervolume": round(r["hypervolume"], 4),
                          "vs_random_median": round(r["hypervolume"] / medians[BASELINE], 3),
                          "hypervolume_ceiling": round(top, 4), "box_hypervolume": round(r["box_hypervolume"], 4),
                          "box_vs_random_median": _ratio(r["box_hypervolume"], box_medians[BASELINE]).rstrip("x"),
                          "references_dominated": len(r["dominated"]), "references": len(references),
                          "undominated": " ".join(name for name in references if name not in r["dominated"]),
                          **({"references_dominated_own_seed": _count(r["dominated_own_seed"]),
                              "undominated_own_seed": "" if r["dominated_own_seed"] is None else " ".join(
                                  name for name in references if name not in r["dominated_own_seed"])}
                             if own_seed_references else {}),
                          "cpu": r.get("cpu", cpu)}
                         for r in rows])
    png_path = csv_path.with_suffix(".png")
    plot(rows, references, objectives, png_path, minutes)
    print(f"wrote {csv_path} and {png_path}")
    if args.json:
        print(json.dumps({"minutes": minutes, "median_hypervolume": medians, "default_strategy": default,
                          "vs_random": {s: medians[s] / medians[BASELINE] for s in strategies},
                          "hypervolume_ceiling": top, "median_box_hypervolume": box_medians,
                          "box_reference": box, "references": references,
                          "dominated": {f"{r['strategy']}-{r['seed']}": r["dominated"] for r in rows},
                          "dominated_own_seed": {f"{r['strategy']}-{r['seed']}": r["dominated_own_seed"] for r in rows}}))


def _count(dominated: list[str] | None) -> str:
    """How many references a front dominates, or '-' where that could not be judged."""
    return "-" if dominated is None else str(len(dominated))


def _ratio(value: float, baseline: float) -> str:
    """value / baseline as '1.23x', or 'inf' where the baseline front covers none of the box."""
    return f"{value / baseline:.2f}x" if baseline > 0 else ("inf" if value > 0 else "1.00x")


if __name__ == "__main__":
    main()
