"""Can the latency lookup table stand in for measuring every trial? Random genotypes of the default
space, each measured end to end on the target (batch 1, one thread, median of 30 runs) and
predicted by summing its parts' table entries, then corrected by the fit to the table's
calibration networks (other random genotypes, measured end to end first, as a node in
`latency.mode: predict` does with its first trials). Reports the share of predictions within
+-10% of measured and the MAPE, raw and corrected (nn-Meter: 99% within +-10% on a Cortex-A76 CPU).
Goal: >= 95% within +-10%.

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
from bitnas.evaluators.predictor import CALIBRATION_NETWORKS, LatencyTable, error_summary
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
    config = LatencyConfig(runs=30, warmup=5, threads=1, target=args.target)

    def sampled(seed: int, how_many: int):
        rng = random.Random(seed)
        for index in range(how_many):
            params = {name: rng.choice(values) for name, values in space.choices().items()}
            torch.manual_seed(seed * 1000 + index)
            genotype = space.decode(params, input_size=28, in_channels=1, num_classes=10)
            yield genotype, build_model(genotype).eval()

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        table = LatencyTable.for_target(Path(scratch), args.target)
        for genotype, model in sampled(1, CALIBRATION_NETWORKS):  # not among the genotypes predicted below
            table.calibrate(model, (1, 28, 28), measure_latency(model, (1, 28, 28), config).median_ms)
        print(f"calibrated on {CALIBRATION_NETWORKS} other genotypes measured end to end", flush=True)
        for index, (genotype, model) in enumerate(sampled(0, count)):
            measured = measure_latency(model, (1, 28, 28), config).median_ms
            raw, steps = table.parts_ms(model, (1, 28, 28))
            predicted = table.corrected(raw, steps)
            rows.append({"genotype": genotype.short(), "measured_ms": round(measured, 4),
                         "sum_of_parts_ms": round(raw, 4), "predicted_ms": round(predicted, 4),
                         "raw_error": round((raw - measured) / measured, 4),
                         "error": round((predicted - measured) / measured, 4)})
            print(f"{index + 1:>3}/{count}  measured {measured:8.3f} ms  parts {raw:8.3f} ms  predicted "
                  f"{predicted:8.3f} ms  error {rows[-1]['error']:+.1%}", flush=True)
        parts = len(table.entries)
    measured_ms = [r["measured_ms"] for r in rows]
    raw_summary = error_summary(measured_ms, [r["sum_of_parts_ms"] for r in rows])
    summary = error_summary(measured_ms, [r["predicted_ms"] for r in rows])
    print(f"\n{summary['n']} genotypes on target {args.target}: {summary['within_10pct']:.0%} within +-10% of measured, "
          f"MAPE {summary['mape']:.1%} (goal >= 95%); the plain sum of parts {raw_summary['within_10pct']:.0%}, "
          f"MAPE {raw_summary['mape']:.1%}; {parts} distinct parts timed")
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
        from bitnas.evaluators.latency import cpu_flags, cpu_model

        print(json.dumps({"target": args.target, **summary, "raw_within_10pct": raw_summary["within_10pct"],
                          "raw_mape": raw_summary["mape"], "calibration_networks": CALIBRATION_NETWORKS,
                          "parts": parts, "cpu": cpu_model(), "flags": list(cpu_flags())}))


if __name__ == "__main__":
    main()
