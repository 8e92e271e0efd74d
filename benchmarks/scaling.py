"""Does a second worker pay? The same study run with 1 and with 2 workers, through the real
`bitnas search` command: trials per minute, orchestration overhead per trial (time not spent
inside evaluation), and the peak memory of all the search's processes together (driver, Ray,
workers). Then the same search on a 3-node Ray cluster on loopback, where trials ask for a custom
resource only one node offers, to show placement.

Goals (issue 7): 2 workers >= 1.7x the trials per minute of 1; overhead <= 5% of trial time;
peak memory of the default search <= 3 GiB.

    python benchmarks/scaling.py [--trials N] [--epochs E] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import optuna  # noqa: E402
import psutil  # noqa: E402
import yaml  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

OUT = Path("results/bench")


class PeakMemory:
    """Samples the summed resident memory of a process and all its descendants."""

    def __init__(self, pid: int, every_s: float = 0.2):
        self.root, self.every_s, self.peak, self._stop = pid, every_s, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.root)
                processes = [root, *root.children(recursive=True)]
            except psutil.Error:
                return
            total = 0
            for process in processes:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(self.every_s)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()


def run_search(folder: Path, *, workers: int, trials: int, epochs: float, extra: list[str] = ()) -> dict:
    results = folder / f"results-{workers}w"
    command = ["bitnas", "search", "--results", str(results), "--study", "scaling", "--trials", str(trials),
               "--epochs", str(epochs), "--workers", str(workers), "--seed", "0", *extra]
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with PeakMemory(process.pid) as memory:
        out, err = process.communicate()
    wall = time.monotonic() - started
    if process.returncode != 0:
        sys.exit(f"search with {workers} worker(s) failed:\n{err[-2000:]}")
    study = optuna.load_study(study_name="scaling", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(results / "optuna.journal"))))
    done = study.get_trials(states=(TrialState.COMPLETE,))
    first_start = min(t.datetime_start for t in done)
    last_end = max(t.datetime_complete for t in done)
    loop_s = (last_end - first_start).total_seconds()
    evaluation_s = sum(t.user_attrs["evaluation_seconds"] for t in done)
    # Slot-seconds the workers had, minus the seconds they spent evaluating, per trial.
    overhead_per_trial = max(0.0, loop_s * workers - evaluation_s) / len(done)
    return {
        "workers": workers, "trials": len(done), "wall_s": round(wall, 1), "loop_s": round(loop_s, 1),
        "trials_per_min": round(len(done) / loop_s * 60, 2),
        "mean_evaluation_s": round(evaluation_s / len(done), 2),
        "overhead_per_trial_s": round(overhead_per_trial, 2),
        "overhead_share": round(overhead_per_trial / (evaluation_s / len(done)), 3),
        "peak_memory_gib": round(memory.peak / 2**30, 2),
        "nodes": sorted({t.user_attrs.get("node", "?").split("/")[-1] for t in done}),
    }


def run_on_cluster(folder: Path, *, trials: int, epochs: float) -> dict:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        plain = cluster.add_node(num_cpus=1)
        device = cluster.add_node(num_cpus=1, resources={"device": 1})
        cluster.wait_for_nodes()
        config = folder / "cluster.yaml"
        config.write_text(yaml.safe_dump({"ray": {"resources": {"device": 1}}}))
        row = run_search(folder / "cluster", workers=1, trials=trials, epochs=epochs,
                         extra=["--ray-address", cluster.address, "--config", str(config)])
        row.update(cluster_nodes=3, device_node=device.node_id[:12], other_nodes=[plain.node_id[:12]])
        return row
    finally:
        cluster.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--quick", action="store_true", help="8 trials of 1 epoch")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON object")
    args = parser.parse_args()
    trials, epochs = (8, 1.0) if args.quick else (args.trials, args.epochs)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        one = run_search(folder, workers=1, trials=trials, epochs=epochs)
        two = run_search(folder, workers=2, trials=trials, epochs=epochs)
        cluster = run_on_cluster(folder, trials=2, epochs=0.25)
    speedup = two["trials_per_min"] / one["trials_per_min"]
    print(f"{'workers':>7} {'trials':>6} {'trials/min':>10} {'eval s/trial':>12} {'overhead s/trial':>16} "
          f"{'overhead':>8} {'peak GiB':>8}")
    for row in (one, two):
        print(f"{row['workers']:>7} {row['trials']:>6} {row['trials_per_min']:>10.2f} {row['mean_evaluation_s']:>12.2f} "
              f"{row['overhead_per_trial_s']:>16.2f} {row['overhead_share']:>8.1%} {row['peak_memory_gib']:>8.2f}")
    print(f"\n2 workers vs 1: {speedup:.2f}x trials per minute (goal >= 1.7x); "
          f"overhead {max(one['overhead_share'], two['overhead_share']):.1%} of trial time at worst (goal <= 5%); "
          f"peak memory {max(one['peak_memory_gib'], two['peak_memory_gib']):.2f} GiB (goal <= 3 GiB)")
    placed = cluster["nodes"] == [cluster["device_node"]]
    print(f"3-node loopback cluster: trials asking for resource 'device' ran on {cluster['nodes']}; "
          f"the device node is {cluster['device_node']}: {'placed correctly' if placed else 'MISPLACED'}")
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / "scaling.csv").open("w", newline="") as handle:
        fields = ["workers", "trials", "wall_s", "loop_s", "trials_per_min", "mean_evaluation_s",
                  "overhead_per_trial_s", "overhead_share", "peak_memory_gib"]
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows([one, two])
    print(f"wrote {OUT / 'scaling.csv'} ({trials} trials of {epochs:g} epoch(s) each, default space, seed 0)")
    if args.json:
        print(json.dumps({"one_worker": one, "two_workers": two, "speedup": round(speedup, 3),
                          "cluster": cluster, "placed_by_resource": placed}))


if __name__ == "__main__":
    main()
