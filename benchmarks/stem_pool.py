"""What does a 3x3 / 2 max pool after the stem buy each default reference architecture? Each
reference against its pooled twin (the same network with `stem_pool: true`, the first neighbour a
search queues, search/neighbours.py), and the twin with its pool run by torch instead of the
engine's native step (evaluators/engine/glue.py), as the engine ran it before that step existed:
- latency: batch 1, one thread, on the search's side-by-side protocol (search/latency_check.py):
  the three networks of a reference timed in turn in `--rounds` alternating rounds, the median of
  the per-round ratios to the reference (below 1: faster), because only ratios measured side by
  side compare on a shared machine;
- energy: the analytic estimate (horowitz45nm);
- accuracy: validation accuracy after one epoch from scratch, the search's default training, at
  each of `--seeds` (a seed picks the data split and the initialisation, as a study's seed does).

    python benchmarks/stem_pool.py [--seeds 0,1] [--rounds 7] [--json]

Writes results/bench/stem_pool.csv.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from torch import nn

from bitnas.evaluators.energy import estimate_energy
from bitnas.evaluators.engine.isa import isa_path
from bitnas.evaluators.evaluate import evaluate
from bitnas.evaluators.latency import cpu_model
from bitnas.search.config import SearchConfig
from bitnas.search.latency_check import model_latency_ratios
from bitnas.search.requests import eval_request
from bitnas.spaces import Genotype, build_model, genotype_costs
from bitnas.spaces.baselines import baseline_genotype

sys.path.insert(0, str(Path(__file__).parent))
from _output import write_csv  # noqa: E402

OUT = Path("results/bench/stem_pool.csv")
GEOMETRY = {"input_size": 28, "in_channels": 1, "num_classes": 10}


class TorchMaxPool(nn.MaxPool2d):
    """The same pool, of a type the engine does not take natively: its stem then runs in torch."""


def pooled(genotype: Genotype) -> Genotype:
    return genotype.model_copy(update={"stem_pool": True})


def with_torch_pool(model: nn.Module) -> nn.Module:
    pool = model.stem[2]
    model.stem[2] = TorchMaxPool(pool.kernel_size, pool.stride, pool.padding)
    return model


def latency_ratios(reference: Genotype, config: SearchConfig, rounds: int) -> tuple[float, float]:
    """(pooled twin, twin with its pool in torch): median per-round latency over the reference's."""
    networks = [build_model(reference), build_model(pooled(reference)), with_torch_pool(build_model(pooled(reference)))]
    shape = (reference.in_channels, reference.input_size, reference.input_size)
    return tuple(model_latency_ratios(networks, shape, config.latency, rounds))


def accuracy(genotype: Genotype, config: SearchConfig, seed: int) -> float:
    request = eval_request(config.model_copy(update={"seed": seed}), 0)
    return evaluate(genotype.to_json(), request, measure_here=False).metrics["val_accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1", help="training seeds, comma-separated (default 0,1)")
    parser.add_argument("--rounds", type=int, default=7, help="alternating latency rounds (default 7)")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args()
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        sys.exit(f"--seeds: comma-separated integers (got {args.seeds!r})")
    if args.rounds < 1:
        sys.exit(f"--rounds: at least 1 (got {args.rounds})")
    config = SearchConfig()
    cpu = f"{cpu_model()} ({isa_path()})"
    print(f"default references against their twins with a stem max pool; {cpu}; one thread, batch 1; "
          f"accuracy after {config.training.epochs:g} epoch(s) at seeds {seeds}", flush=True)
    rows = []
    for name in config.references:
        reference = baseline_genotype(name, **GEOMETRY)
        native, in_torch = latency_ratios(reference, config, args.rounds)
        energies = [estimate_energy(genotype_costs(g), config.energy_profile).total_uj for g in (reference, pooled(reference))]
        accuracies = [[accuracy(g, config, seed) for seed in seeds] for g in (reference, pooled(reference))]
        row = {"reference": name, "latency_pooled_vs_reference": round(native, 3),
               "latency_pooled_torch_pool_vs_reference": round(in_torch, 3),
               "native_pool_speedup": round(in_torch / native, 2),
               "energy_reference_uj": round(energies[0], 4), "energy_pooled_uj": round(energies[1], 4),
               "accuracy_reference": " / ".join(f"{a:.4f}" for a in accuracies[0]),
               "accuracy_pooled": " / ".join(f"{a:.4f}" for a in accuracies[1]),
               "accuracy_gain_mean": round(statistics.mean(accuracies[1]) - statistics.mean(accuracies[0]), 4),
               "seeds": " ".join(map(str, seeds)), "rounds": args.rounds, "cpu": cpu}
        rows.append(row)
        print(f"  {name:<24} latency pooled {native:.3f}x (pool in torch {in_torch:.3f}x), energy "
              f"{energies[0]:.3f} -> {energies[1]:.3f} uJ, accuracy {row['accuracy_reference']} -> "
              f"{row['accuracy_pooled']}", flush=True)
    write_csv(OUT, rows)
    print(f"wrote {OUT}")
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
