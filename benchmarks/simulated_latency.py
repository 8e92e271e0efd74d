"""How much slower is a binary network *simulated* in float torch than the float network it replaces?

The search's latency objective times the torch model until a packed binary engine exists. This
benchmark measures, in one run and interleaved (these machines are noisy), the same architecture
with every stage binary and with every stage float, at batch 1 on one thread, and reports the
ratio. A ratio above 1 means the simulation penalises binary designs that a real engine would
make faster: the reason the engine is needed.

    python benchmarks/simulated_latency.py [--runs N] [--csv PATH]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from bitnas.evaluators import LatencyConfig, measure_latency
from bitnas.spaces import Genotype, StageSpec, build_model

from _output import write_csv  # noqa: E402

SHAPES = {  # name: (input size, channels, stem width, stage widths)
    "mnist-small": (28, 1, 8, (8, 16, 32)),
    "mnist-large": (28, 1, 16, (24, 48, 64)),
    "cifar-resnet-ish": (32, 3, 64, (64, 128, 256)),
}


def network(size: int, channels: int, stem: int, widths: tuple[int, ...], block: str) -> Genotype:
    stages = tuple(StageSpec(block=block, width=w, depth=2, stride=1 if i == 0 else 2) for i, w in enumerate(widths))
    return Genotype(input_size=size, in_channels=channels, num_classes=10, stem_width=stem, stages=stages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is kept")
    parser.add_argument("--csv", type=Path, default=Path("results/bench/simulated_latency.csv"))
    args = parser.parse_args()
    torch.manual_seed(0)
    config = LatencyConfig(runs=args.runs, warmup=10, threads=1, target="torch-cpu")
    rows = []
    for name, (size, channels, stem, widths) in SHAPES.items():
        models = {block: build_model(network(size, channels, stem, widths, block)) for block in ("float", "binary")}
        medians: dict[str, list[float]] = {"float": [], "binary": []}
        for _ in range(args.rounds):
            for block, model in models.items():
                medians[block].append(measure_latency(model, (channels, size, size), config).median_ms)
        fp, binary = statistics.median(medians["float"]), statistics.median(medians["binary"])
        rows.append({"network": name, "input": f"{size}x{size}x{channels}", "float_ms": round(fp, 4),
                     "binary_simulated_ms": round(binary, 4), "binary_over_float": round(binary / fp, 2)})
    header = f"{'network':<18} {'input':<9} {'float ms':>9} {'binary(sim) ms':>15} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['network']:<18} {row['input']:<9} {row['float_ms']:>9.3f} {row['binary_simulated_ms']:>15.3f} "
              f"{row['binary_over_float']:>6.2f}")
    write_csv(args.csv, rows)
    print(f"\nwrote {args.csv} (batch 1, 1 thread, median of {args.runs} runs, median of {args.rounds} interleaved rounds; "
          f"torch {torch.__version__})")


if __name__ == "__main__":
    main()
