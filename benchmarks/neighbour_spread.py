"""Does a reference's cheaper neighbour beat it, or only its luckier draws? At one epoch from
scratch a network's validation accuracy moves by a point or two with the seed (the data split and
the initialisation), as much as separates a reference from its cheaper neighbours; a search's
front, a maximum over many such draws, and a reference trained once are then compared draw
against draw. This trains a reference and the neighbours a search queues for it
(search/neighbours.py: its `--neighbours` nearest steps down, then `--grown` grown twins) at each
of `--seeds`, with the same request a reference gets in benchmarks/search_quality.py (offset 0 of
that seed), and reports per network:
- accuracy at each seed, its mean and standard deviation, and at how many seeds it reached the
  reference's accuracy at that seed and the reference's seed-0 accuracy (what the strategy
  benchmark compares every seed's front against);
- latency: batch 1, one thread, each network timed against the reference in alternating rounds
  (search/latency_check.py), the median of the per-round ratios (below 1: faster);
- energy: the analytic estimate (the configured profile).
Then how much of the spread is the seed's data (its split and order), shared by every network at that seed (the
standard deviation of the per-seed mean over the networks), and how much is each network's own
draw (the residual once network and seed means are taken out): the share a comparison at the same
seed (same validation images) removes and one against another seed's draw keeps.

    python benchmarks/neighbour_spread.py [--reference mobilenetv2_int8_small] [--seeds 0,1,2,3,4]
                                          [--neighbours 5] [--grown 2] [--rounds 7] [--json]
    python benchmarks/neighbour_spread.py --read-back     # the split of the spread, from the CSV

Writes results/bench/neighbour_spread.csv.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

from bitnas.evaluators.energy import estimate_energy
from bitnas.evaluators.engine.isa import isa_path
from bitnas.evaluators.latency import cpu_model
from bitnas.search.config import SearchConfig
from bitnas.search.latency_check import model_latency_ratios
from bitnas.search.neighbours import cheaper_neighbours, grown_twins
from bitnas.spaces import build_model, genotype_costs
from bitnas.spaces.baselines import SMALL_BASELINES, baseline_genotype

sys.path.insert(0, str(Path(__file__).parent))
from _output import write_csv  # noqa: E402
from stem_pool import GEOMETRY, accuracy  # noqa: E402

OUT = Path("results/bench/neighbour_spread.csv")


def seed_and_draw_spread(accuracies: list[list[float]]) -> tuple[float, float]:
    """For accuracies[network][seed]: the standard deviation across seeds of the per-seed mean over
    networks (the seed's data, common to all of them), and the residual standard deviation once
    each network's and each seed's mean are taken out (a network's own draw at a seed)."""
    networks, seeds = len(accuracies), len(accuracies[0])
    if networks < 2 or seeds < 2 or any(len(row) != seeds for row in accuracies):
        raise ValueError("need at least 2 networks, each at the same 2 or more seeds")
    grand = statistics.mean(a for row in accuracies for a in row)
    network_means = [statistics.mean(row) for row in accuracies]
    seed_means = [statistics.mean(row[s] for row in accuracies) for s in range(seeds)]
    residuals = [row[s] - network_means[n] - seed_means[s] + grand for n, row in enumerate(accuracies) for s in range(seeds)]
    # degrees of freedom of a two-way table without replication
    residual_sd = (sum(r * r for r in residuals) / ((networks - 1) * (seeds - 1))) ** 0.5
    return statistics.stdev(seed_means), residual_sd


def print_spread(accuracies: list[list[float]]) -> None:
    seed_sd, draw_sd = seed_and_draw_spread(accuracies)
    print(f"spread: the seed's data moves every network together by sd {seed_sd:.4f} (per-seed mean over "
          f"{len(accuracies)} networks); a network's own draw adds sd {draw_sd:.4f} (residual)")


def read_back() -> None:
    if not OUT.exists():
        sys.exit(f"{OUT} is missing: run this benchmark first")
    with OUT.open() as table:
        rows = list(csv.DictReader(table))
    try:
        accuracies = [[float(a) for a in row["accuracy"].split(" / ")] for row in rows]
        print(f"{rows[0]['reference']} and {len(rows) - 1} neighbours at seeds {rows[0]['seeds']}; {rows[0]['cpu']}")
        print_spread(accuracies)
    except (KeyError, IndexError, ValueError) as error:
        sys.exit(f"{OUT}: not this benchmark's table ({error})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default="mobilenetv2_int8_small", help="a small reference architecture")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="training seeds, comma-separated (default 0-4)")
    parser.add_argument("--neighbours", type=int, default=5, help="nearest steps down to train (default 5)")
    parser.add_argument("--grown", type=int, default=2, help="grown twins to train (default 2)")
    parser.add_argument("--rounds", type=int, default=7, help="alternating latency rounds (default 7)")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    parser.add_argument("--read-back", action="store_true",
                        help="train nothing: print the split of the spread from the CSV an earlier run wrote")
    args = parser.parse_args()
    if args.read_back:
        return read_back()
    if args.reference not in SMALL_BASELINES:
        sys.exit(f"--reference: one of {', '.join(SMALL_BASELINES)} (got {args.reference!r})")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        sys.exit(f"--seeds: comma-separated integers (got {args.seeds!r})")
    if 0 not in seeds:
        sys.exit("--seeds: must include 0 (the strategy benchmark's references are trained at seed 0)")
    if min(args.neighbours, args.grown) < 0 or args.rounds < 1:
        sys.exit("--neighbours and --grown: 0 or more; --rounds: at least 1")
    config = SearchConfig()
    neighbours = (cheaper_neighbours(config.space, args.reference, GEOMETRY, config.energy_profile, args.neighbours)
                  + grown_twins(config.space, args.reference, GEOMETRY, config.energy_profile, args.grown))
    if not neighbours:
        sys.exit(f"--reference: the default space cannot express {args.reference}, so it has no neighbours")
    reference = baseline_genotype(args.reference, **GEOMETRY)
    networks = {"reference": reference, **{n.change: config.space.decode(n.params, **GEOMETRY) for n in neighbours}}
    cpu = f"{cpu_model()} ({isa_path()})"
    print(f"{args.reference} and {len(neighbours)} of its neighbours; {cpu}; accuracy after "
          f"{config.training.epochs:g} epoch(s) at seeds {seeds}; latency side by side, one thread, batch 1", flush=True)
    ratios = [1.0, *model_latency_ratios([build_model(g) for g in networks.values()],
                                         (reference.in_channels, reference.input_size, reference.input_size),
                                         config.latency, args.rounds)]
    rows, reference_accuracy = [], {}
    for (name, genotype), ratio in zip(networks.items(), ratios):
        accuracies = {seed: accuracy(genotype, config, seed) for seed in seeds}
        if name == "reference":
            reference_accuracy = accuracies
        row = {"reference": args.reference, "network": name, "latency_vs_reference": round(ratio, 3),
               "energy_uj": round(estimate_energy(genotype_costs(genotype), config.energy_profile).total_uj, 4),
               "accuracy": " / ".join(f"{a:.4f}" for a in accuracies.values()),
               "accuracy_mean": round(statistics.mean(accuracies.values()), 4),
               "accuracy_sd": round(statistics.stdev(accuracies.values()), 4) if len(seeds) > 1 else 0.0,
               "seeds_at_least_reference_same_seed": sum(a >= reference_accuracy[s] for s, a in accuracies.items()),
               "seeds_at_least_reference_seed0": sum(a >= reference_accuracy[0] for a in accuracies.values()),
               "seeds": " ".join(map(str, seeds)), "rounds": args.rounds, "cpu": cpu}
        rows.append(row)
        print(f"  {name:<64} latency {ratio:.3f}x  energy {row['energy_uj']:.3f} uJ  accuracy {row['accuracy']}  "
              f"mean {row['accuracy_mean']:.4f} (sd {row['accuracy_sd']:.4f}); reached the reference at "
              f"{row['seeds_at_least_reference_same_seed']}/{len(seeds)} seeds (its seed-0 draw at "
              f"{row['seeds_at_least_reference_seed0']})", flush=True)
    if len(seeds) > 1:
        print_spread([[float(a) for a in row["accuracy"].split(" / ")] for row in rows])
    write_csv(OUT, rows)
    print(f"wrote {OUT}")
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
