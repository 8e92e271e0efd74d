"""Is a latency measured during a two-worker search the latency measured alone?

Ten genotypes of the default space are measured three ways, all on the packed engine (batch 1,
one thread, the search's protocol):
- alone: nothing else runs (before the search starts, and again after it ends; their mean);
- slot: while a real two-worker `bitnas search` trains on this machine, through the node's
  measurement slot (evaluators/measurement.py), as every trial is now measured;
- unguarded: during the same search without the slot, as trials were measured before.
Slot and unguarded measurements alternate genotype by genotype, so both see the same search.
Goal: the slot's median ratio to alone within +-5%.

    python benchmarks/isolation.py [--genotypes N] [--json]

Writes results/bench/isolation.csv. Run it alone on the machine (no tests, no other benchmark).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bitnas.evaluators import LatencyConfig, measure_latency
from bitnas.evaluators.evaluate import EvalRequest, measure_before_training
from bitnas.evaluators.measurement import NODE_DIR_ENV, MeasurementCache, MeasurementSlot
from bitnas.spaces import build_model

from _native_networks import sampled_default_genotypes  # noqa: E402
from _output import write_csv  # noqa: E402

OUT = Path("results/bench")
LATENCY = LatencyConfig(runs=50, warmup=5, threads=1)



def alone(models) -> list[float]:
    return [measure_latency(model, (1, 28, 28), LATENCY).median_ms for model in models]


def start_search(folder: Path, node_dir: Path) -> subprocess.Popen:
    """A real two-worker search of the default space, long enough to outlast the measurements."""
    env = {**os.environ, NODE_DIR_ENV: str(node_dir)}
    log = open(folder / "search.log", "w")
    return subprocess.Popen([sys.executable, "-m", "bitnas.cli", "search", "--results", str(folder / "results"),
                             "--study", "isolation", "--trials", "200", "--workers", "2", "--seed", "7"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_for_training(folder: Path, process: subprocess.Popen, timeout_s: float = 240.0) -> None:
    """Until the search's first trials are running (its progress line counts them)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the search ended early; see {folder / 'search.log'}")
        text = (folder / "search.log").read_text(errors="replace")
        if "running" in text or "trial" in text:
            time.sleep(20)  # past Ray's start and the first trials' data loading: training is under way
            return
        time.sleep(1)
    raise SystemExit("the search did not start training in time")


def stop(process: subprocess.Popen) -> None:
    for _ in range(2):  # the first interrupt lets trials finish, the second stops them
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            time.sleep(2)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genotypes", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    genotypes = sampled_default_genotypes(args.genotypes)
    models = []
    for index, genotype in enumerate(genotypes):
        torch.manual_seed(index)
        models.append(build_model(genotype).eval())
    print(f"measuring {len(models)} genotypes alone ...", flush=True)
    before = alone(models)
    with tempfile.TemporaryDirectory() as scratch:
        folder, node_dir = Path(scratch), Path(scratch) / "node"
        node_dir.mkdir()
        search = start_search(folder, node_dir)
        slot_ms, unguarded_ms, waits = [], [], []
        try:
            wait_for_training(folder, search)
            print("the search trains; measuring during it ...", flush=True)
            slot = MeasurementSlot(node_dir)
            request = EvalRequest(latency=LATENCY, energy_meter="off")
            for genotype, model in zip(genotypes, models):
                measured = measure_before_training(model, genotype, (1, 28, 28), request, slot,
                                                   MeasurementCache(Path(scratch) / f"cache-{len(slot_ms)}"))
                slot_ms.append(measured["latency"]["median_ms"])
                waits.append(measured["slot_wait_s"])
                unguarded_ms.append(measure_latency(model, (1, 28, 28), LATENCY).median_ms)
            if search.poll() is not None:
                raise SystemExit(f"the search ended while measuring; see {folder / 'search.log'}")
        finally:
            stop(search)
    after = alone(models)
    rows = []
    for genotype, b, a, s, u, w in zip(genotypes, before, after, slot_ms, unguarded_ms, waits):
        base = (a + b) / 2
        rows.append({"genotype": genotype.short(), "alone_before_ms": round(b, 4), "alone_after_ms": round(a, 4),
                     "slot_ms": round(s, 4), "unguarded_ms": round(u, 4), "slot_ratio": round(s / base, 4),
                     "unguarded_ratio": round(u / base, 4), "slot_wait_s": round(w, 3)})
    print(f"\n{'genotype':<48} {'alone':>8} {'slot':>8} {'unguarded':>10} {'slot/alone':>10} {'ungd/alone':>10}")
    for row in rows:
        print(f"{row['genotype'][:48]:<48} {(row['alone_before_ms'] + row['alone_after_ms']) / 2:8.3f} "
              f"{row['slot_ms']:8.3f} {row['unguarded_ms']:10.3f} {row['slot_ratio']:10.3f} {row['unguarded_ratio']:10.3f}")
    summary = {"genotypes": len(rows), "slot_median_ratio": statistics.median(r["slot_ratio"] for r in rows),
               "unguarded_median_ratio": statistics.median(r["unguarded_ratio"] for r in rows),
               "alone_drift_median": statistics.median(r["alone_after_ms"] / r["alone_before_ms"] for r in rows),
               "slot_wait_median_s": statistics.median(r["slot_wait_s"] for r in rows)}
    from bitnas.evaluators.latency import cpu_flags, cpu_model

    summary.update(cpu=cpu_model(), flags=list(cpu_flags()))
    print(f"\nmedian latency during a two-worker search / alone: slot {summary['slot_median_ratio']:.3f} "
          f"(goal within +-5%), unguarded {summary['unguarded_median_ratio']:.3f}; "
          f"alone after / before {summary['alone_drift_median']:.3f}; median wait for the slot "
          f"{summary['slot_wait_median_s']:.2f} s")
    write_csv(OUT / "isolation.csv", rows)
    print(f"wrote {OUT / 'isolation.csv'}")
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
