"""The default search with and without early stopping, same seed and trial count, through the
real `bitnas search` command: wall time, final hypervolume (front of fully trained trials only,
the config's fixed reference point), trials stopped and epochs saved.

Goal (issue 5): >= 30% less wall time for <= 5% hypervolume loss. Runs alternate (off, on, off,
on, ...) when --repeats > 1, so load from other jobs on the machine hits both alike. Writes
results/bench/early_stopping.csv.

    python benchmarks/early_stopping.py [--trials N] [--epochs E] [--repeats R] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import yaml

from bitnas.search.config import SearchConfig
from bitnas.search.objectives import objectives_for
from bitnas.search.report import front_hypervolume, trials_frame

from _output import write_csv  # noqa: E402

OUT = Path("results/bench")


def run_search(folder: Path, early: bool, trials: int, epochs: float, seed: int, percentile: float) -> dict:
    results = folder / f"{'on' if early else 'off'}-{seed}-{time.monotonic_ns()}"
    results.mkdir(parents=True)
    config_path = results / "config.yaml"
    # references: [] so both runs spend their time on trials alone.
    config_path.write_text(yaml.safe_dump({"references": [], "early_stopping": {"enabled": early, "percentile": percentile}}))
    command = ["bitnas", "search", "--config", str(config_path), "--results", str(results), "--study", "es",
               "--seed", str(seed), "--trials", str(trials), "--epochs", str(epochs)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"search (early stopping {early}) failed:\n{done.stdout[-1500:]}\n{done.stderr[-2000:]}")
    config = SearchConfig()
    objectives = objectives_for(config.objectives)
    study = optuna.load_study(study_name="es", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(results / "optuna.journal"))))
    frame = trials_frame(study, objectives)
    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    trained = [t for t in completed if "duplicate_of" not in t.user_attrs]
    epochs_run = sum(len(t.user_attrs.get("epoch_val_accuracy", [])) for t in trained)
    return {"early_stopping": early, "seed": seed, "trials": len(frame), "wall_s": round(seconds, 1),
            "hypervolume": front_hypervolume(frame, objectives, config.hypervolume_reference),
            "stopped": sum(bool(t.user_attrs.get("stopped_early")) for t in completed),
            "epochs_trained": epochs_run, "front_size": int(frame["pareto"].sum()),
            "best_accuracy_on_front": float(frame[frame["pareto"]]["accuracy"].max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=SearchConfig().trials)
    parser.add_argument("--epochs", type=float, default=SearchConfig().training.epochs)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--percentile", type=float, default=SearchConfig().early_stopping.percentile)
    parser.add_argument("--quick", action="store_true", help="12 trials per search, one pair (< 5 min)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.repeats = 12, 1
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for early in (False, True):
                row = run_search(Path(scratch), early, args.trials, args.epochs, args.seed + repeat, args.percentile)
                rows.append(row)
                print(f"  early_stopping={str(early):<5} seed {row['seed']}: {row['wall_s']:.0f}s  hypervolume "
                      f"{row['hypervolume']:.1f}  stopped {row['stopped']}/{row['trials']}  epochs trained "
                      f"{row['epochs_trained']}", flush=True)
    name = "early_stopping_quick.csv" if args.quick else "early_stopping.csv"
    write_csv(OUT / name, rows)
    off = [r for r in rows if not r["early_stopping"]]
    on = [r for r in rows if r["early_stopping"]]
    wall_off, wall_on = statistics.median(r["wall_s"] for r in off), statistics.median(r["wall_s"] for r in on)
    hv_off, hv_on = statistics.median(r["hypervolume"] for r in off), statistics.median(r["hypervolume"] for r in on)
    time_saved = 1 - wall_on / wall_off
    hv_loss = 1 - hv_on / hv_off if hv_off else 0.0
    print(f"\n{'early stopping':<15} {'wall s':>8} {'hypervolume':>12} {'stopped':>8} {'epochs':>7}")
    for label, group in (("off", off), ("on", on)):
        print(f"{label:<15} {statistics.median(r['wall_s'] for r in group):>8.0f} "
              f"{statistics.median(r['hypervolume'] for r in group):>12.1f} "
              f"{statistics.median(r['stopped'] for r in group):>8.0f} {statistics.median(r['epochs_trained'] for r in group):>7.0f}")
    print(f"wall time saved {time_saved:.1%} (goal >= 30%), hypervolume change {-hv_loss:+.1%} (goal: loss <= 5%) -> "
          f"{'met' if time_saved >= 0.30 and hv_loss <= 0.05 else 'NOT met'}; "
          f"{args.trials} trials x {args.epochs:g} epochs, {args.repeats} pair(s)")
    print(f"wrote {OUT / name}")
    if args.json:
        print(json.dumps({"trials": args.trials, "epochs": args.epochs, "repeats": args.repeats,
                          "wall_s_off": wall_off, "wall_s_on": wall_on, "wall_time_saved": round(time_saved, 4),
                          "hypervolume_off": hv_off, "hypervolume_on": hv_on, "hypervolume_loss": round(hv_loss, 4),
                          "runs": rows}))


if __name__ == "__main__":
    main()
