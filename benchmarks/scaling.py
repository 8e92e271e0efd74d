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

from _output import write_csv  # noqa: E402

OUT = Path("results/bench")


class PeakMemory:
    """Samples the memory of a process and all its descendants together: the sum of their
    proportional set sizes (PSS: each shared page split among the processes that map it, so torch's
    libraries, mapped by the driver and every worker, count once) and, for comparison, the plain
    sum of resident sizes (RSS, which counts every shared page once per process)."""

    def __init__(self, pid: int, every_s: float = 0.5):
        self.root, self.every_s, self._stop = pid, every_s, threading.Event()
        self.peak_pss = self.peak_rss = 0
        self.peak_processes: list[tuple[str, int]] = []  # (name, PSS) at the PSS peak
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.root)
                processes = [root, *root.children(recursive=True)]
            except psutil.Error:
                return
            pss = rss = 0
            named = []
            for process in processes:
                try:
                    memory = process.memory_full_info()
                    name = " ".join(process.cmdline()[:3])[-60:]
                except psutil.Error:
                    continue
                pss, rss = pss + memory.pss, rss + memory.rss
                named.append((name, memory.pss))
            if pss > self.peak_pss:
                self.peak_pss, self.peak_processes = pss, sorted(named, key=lambda item: -item[1])
            self.peak_rss = max(self.peak_rss, rss)
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
    evaluated = [t for t in done if "evaluation_seconds" in t.user_attrs]  # not those reusing a duplicate's result
    evaluation_s = sum(t.user_attrs["evaluation_seconds"] for t in evaluated)
    # Orchestration overhead of a trial: from the driver asking for it to the driver having recorded
    # it, the time not spent inside evaluation (dispatch, the Ray task's start and result, the
    # study and MLflow writes).
    overhead_per_trial = sum((t.datetime_complete - t.datetime_start).total_seconds() - t.user_attrs["evaluation_seconds"]
                             for t in evaluated) / len(evaluated)
    # Slot-seconds the workers had but did not evaluate in, per trial: the overhead above plus a
    # short study's tail, where one worker has no trial left while another finishes its last.
    idle_per_trial = max(0.0, loop_s * workers - evaluation_s) / len(done)
    return {
        "workers": workers, "trials": len(done), "wall_s": round(wall, 1), "loop_s": round(loop_s, 1),
        "trials_per_min": round(len(done) / loop_s * 60, 2),
        "mean_evaluation_s": round(evaluation_s / len(evaluated), 2),
        "overhead_per_trial_s": round(overhead_per_trial, 2),
        "overhead_share": round(overhead_per_trial / (evaluation_s / len(evaluated)), 3),
        "idle_slot_s_per_trial": round(idle_per_trial, 2),
        "peak_memory_gib": round(memory.peak_pss / 2**30, 2),
        "peak_rss_sum_gib": round(memory.peak_rss / 2**30, 2),
        "processes_at_peak": [f"{name}: {size / 2**20:.0f} MiB" for name, size in memory.peak_processes],
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
    parser.add_argument("--quick", action="store_true", help="12 trials of 1 epoch")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON object")
    args = parser.parse_args()
    trials, epochs = (12, 1.0) if args.quick else (args.trials, args.epochs)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        one = run_search(folder, workers=1, trials=trials, epochs=epochs)
        two = run_search(folder, workers=2, trials=trials, epochs=epochs)
        cluster = run_on_cluster(folder, trials=2, epochs=0.25)
    speedup = two["trials_per_min"] / one["trials_per_min"]
    print(f"{'workers':>7} {'trials':>6} {'trials/min':>10} {'eval s/trial':>12} {'overhead s/trial':>16} "
          f"{'overhead':>8} {'idle slot s/trial':>17} {'peak GiB (PSS)':>14} {'(RSS sum)':>9}")
    for row in (one, two):
        print(f"{row['workers']:>7} {row['trials']:>6} {row['trials_per_min']:>10.2f} {row['mean_evaluation_s']:>12.2f} "
              f"{row['overhead_per_trial_s']:>16.2f} {row['overhead_share']:>8.1%} {row['idle_slot_s_per_trial']:>17.2f} "
              f"{row['peak_memory_gib']:>14.2f} {row['peak_rss_sum_gib']:>9.2f}")
    print("processes at the 2-worker peak (PSS): " + "; ".join(two["processes_at_peak"][:6]))
    print(f"\n2 workers vs 1: {speedup:.2f}x trials per minute (goal >= 1.7x); "
          f"overhead {max(one['overhead_share'], two['overhead_share']):.1%} of trial time at worst (goal <= 5%); "
          f"peak memory {max(one['peak_memory_gib'], two['peak_memory_gib']):.2f} GiB (goal <= 3 GiB)")
    placed = cluster["nodes"] == [cluster["device_node"]]
    print(f"3-node loopback cluster: trials asking for resource 'device' ran on {cluster['nodes']}; "
          f"the device node is {cluster['device_node']}: {'placed correctly' if placed else 'MISPLACED'}")
    fields = ["workers", "trials", "wall_s", "loop_s", "trials_per_min", "mean_evaluation_s",
              "overhead_per_trial_s", "overhead_share", "idle_slot_s_per_trial", "peak_memory_gib", "peak_rss_sum_gib"]
    write_csv(OUT / "scaling.csv", [{field: row[field] for field in fields} for row in (one, two)])
    print(f"wrote {OUT / 'scaling.csv'} ({trials} trials of {epochs:g} epoch(s) each, default space, seed 0)")
    if args.json:
        print(json.dumps({"one_worker": one, "two_workers": two, "speedup": round(speedup, 3),
                          "cluster": cluster, "placed_by_resource": placed}))


if __name__ == "__main__":
    main()
