"""Can the latency lookup table stand in for measuring every trial? Random genotypes of the default
space, each measured end to end on the target (batch 1, one thread, median of 30 runs) and
predicted by summing its parts' table entries. Reports the share of predictions within +-10% of
measured and the MAPE (nn-Meter: 99% within +-10% on a Cortex-A76 CPU).

Writes results/bench/predictor.csv and results/bench/predictor.png.

    python benchmarks/predictor.py [--genotypes N] [--target cpu|torch-cpu] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

import torch

from bitnas.evaluators import LatencyConfig, measure_latency
from bitnas.evaluators.predictor import LatencyTable, error_summary
from bitnas.search.config import SearchConfig
from bitnas.spaces import build_model

from _output import write_csv  # noqa: E402

OUT = Path("results/bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genotypes", type=int, default=60)
    parser.add_argument("--target", default="cpu", choices=["cpu", "torch-cpu"])
    parser.add_argument("--quick", action="store_true", help="20 genotypes")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    count = 20 if args.quick else args.genotypes
    space = SearchConfig().space
    rng = random.Random(0)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        table = LatencyTable.for_target(Path(scratch), args.target)
        for index in range(count):
            params = {name: rng.choice(values) for name, values in space.choices().items()}
            genotype = space.decode(params, input_size=28, in_channels=1, num_classes=10)
            torch.manual_seed(index)
            model = build_model(genotype).eval()
            measured = measure_latency(model, (1, 28, 28), LatencyConfig(runs=30, warmup=5, threads=1,
                                                                         target=args.target)).median_ms
            predicted = table.predict(model, (1, 28, 28))
            rows.append({"genotype": genotype.short(), "measured_ms": round(measured, 4),
                         "predicted_ms": round(predicted, 4),
                         "error": round((predicted - measured) / measured, 4)})
            print(f"{index + 1:>3}/{count}  measured {measured:8.3f} ms  predicted {predicted:8.3f} ms  "
                  f"error {rows[-1]['error']:+.1%}", flush=True)
        parts = len(table.entries)
    summary = error_summary([r["measured_ms"] for r in rows], [r["predicted_ms"] for r in rows])
    print(f"\n{summary['n']} genotypes on target {args.target}: {summary['within_10pct']:.0%} within +-10% of measured, "
          f"MAPE {summary['mape']:.1%}; {parts} distinct parts timed")
    write_csv(OUT / "predictor.csv", rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.5, 5), dpi=120)
    measured = [r["measured_ms"] for r in rows]
    axis.scatter(measured, [r["predicted_ms"] for r in rows], s=18)
    low, high = min(measured) * 0.8, max(measured) * 1.2
    axis.plot([low, high], [low, high], color="grey", lw=1)
    axis.fill_between([low, high], [low * 0.9, high * 0.9], [low * 1.1, high * 1.1], color="grey", alpha=0.15,
                      label="+-10%")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("measured latency (ms)")
    axis.set_ylabel("predicted latency (ms, sum of parts)")
    axis.set_title(f"lookup-table predictor, target {args.target}: {summary['within_10pct']:.0%} within +-10%")
    axis.legend()
    figure.tight_layout()
    figure.savefig(OUT / "predictor.png")
    print(f"wrote {OUT / 'predictor.csv'} and {OUT / 'predictor.png'}")
    if args.json:
        print(json.dumps({"target": args.target, **summary, "parts": parts}))


if __name__ == "__main__":
    main()
