"""Does the supernet rank networks as training them from scratch does? Kendall tau and Spearman
rho between a network's accuracy read from the one-shot supernet (weights sliced out, BatchNorm
recalibrated) and its accuracy after `--scratch-epochs` of stand-alone training, over networks
sampled from the default space as the random sampler samples them (issue 13 goal: tau >= 0.6).

Stand-alone results are kept in results/bench/supernet_fidelity_scratch.csv and reused (the
slow half); the supernet comes from its cache under results/ when trained before.

    python benchmarks/supernet_fidelity.py [--networks 30] [--scratch-epochs 2] [--supernet-epochs E] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from scipy import stats

sys.path.insert(0, str(Path(__file__).parent))
from _native_networks import sampled_default_genotypes  # noqa: E402
from _output import write_csv  # noqa: E402

OUT = Path("results/bench")
SCRATCH = OUT / "supernet_fidelity_scratch.csv"


def scratch_accuracy(genotype_json: str, epochs: float) -> float:
    import torch

    from bitnas.evaluators import load_dataset
    from bitnas.evaluators.settings import TrainingConfig
    from bitnas.evaluators.train import train
    from bitnas.spaces import Genotype, build_model

    torch.set_num_threads(1)
    data = load_dataset("mnist5k", 0)
    torch.manual_seed(0)
    model = build_model(Genotype.from_json(genotype_json))
    outcome = train(model, data.train, data.val, TrainingConfig(epochs=epochs), seed=0)
    return outcome.epoch_val_accuracy[-1]


def scratch_results(genotypes, epochs: float) -> dict[str, float]:
    known = {}
    if SCRATCH.is_file():
        with SCRATCH.open() as handle:
            known = {(row["hash"], float(row["epochs"])): float(row["val_accuracy"]) for row in csv.DictReader(handle)}
    todo = [g for g in genotypes if (g.hash(), epochs) not in known]
    if todo:
        print(f"training {len(todo)} networks from scratch ({epochs:g} epochs each, 2 processes)", flush=True)
        with ProcessPoolExecutor(2) as pool:
            futures = {pool.submit(scratch_accuracy, g.to_json(), epochs): g for g in todo}
            for done, future in enumerate(futures, 1):
                genotype = futures[future]
                known[(genotype.hash(), epochs)] = future.result()
                print(f"  [{done}/{len(todo)}] {known[(genotype.hash(), epochs)]:.3f}  {genotype.short()}", flush=True)
                write_csv(SCRATCH, [{"hash": h, "epochs": e, "val_accuracy": a} for (h, e), a in known.items()])
    return {g.hash(): known[(g.hash(), epochs)] for g in genotypes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=30)
    parser.add_argument("--scratch-epochs", type=float, default=2.0)
    parser.add_argument("--supernet-epochs", type=float, default=None, help="default: the search's default")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    from bitnas.evaluators import load_dataset
    from bitnas.evaluators.settings import DataOptions, SupernetConfig
    from bitnas.evaluators.supernet import SupernetSpec, evaluate_subnet, load_subnet
    from bitnas.search.config import SearchConfig

    config = SearchConfig()
    supernet = SupernetConfig(**({"epochs": args.supernet_epochs} if args.supernet_epochs else {}))
    data = load_dataset("mnist5k", 0)
    geometry = {"input_size": data.input_size, "in_channels": data.in_channels, "num_classes": data.num_classes}
    spec = SupernetSpec("results", config.space, geometry, "mnist5k", 0, DataOptions(), 0, supernet, config.training,
                        threads=os.cpu_count() or 1)
    started = time.perf_counter()
    shared = None
    for item in spec.load_or_train():
        if hasattr(item, "weights"):
            shared = item
        else:
            print(f"\r  supernet step {item.step}/{item.steps}  loss {item.loss:.3f}  {item.seconds:.0f}s",
                  end="", flush=True)
    print(f"\nsupernet: {shared.steps} steps, {time.perf_counter() - started:.0f}s here "
          f"(trained in {shared.seconds:.0f}s), largest network {shared.largest_val_accuracy:.3f} val")

    genotypes = sampled_default_genotypes(args.networks, seed=13)
    torch.set_num_threads(1)
    one_shot, seconds = {}, []
    for genotype in genotypes:
        begun = time.perf_counter()
        one_shot[genotype.hash()] = evaluate_subnet(load_subnet(genotype, shared), data.train, data.val, supernet, 0)
        seconds.append(time.perf_counter() - begun)
    scratch = scratch_results(genotypes, args.scratch_epochs)
    keys = [g.hash() for g in genotypes]
    tau = stats.kendalltau([one_shot[k] for k in keys], [scratch[k] for k in keys]).statistic
    rho = stats.spearmanr([one_shot[k] for k in keys], [scratch[k] for k in keys]).statistic
    rows = [{"network": g.short(), "hash": g.hash(), "supernet_val_accuracy": round(one_shot[g.hash()], 4),
             "scratch_val_accuracy": round(scratch[g.hash()], 4)} for g in genotypes]
    print(f"\n{'supernet':>9} {'scratch':>8}  network")
    for row in sorted(rows, key=lambda r: -r["scratch_val_accuracy"]):
        print(f"{row['supernet_val_accuracy']:>9.3f} {row['scratch_val_accuracy']:>8.3f}  {row['network']}")
    cpu = platform.processor() or platform.machine()
    summary = {"networks": len(rows), "scratch_epochs": args.scratch_epochs, "supernet_epochs": supernet.epochs,
               "kendall_tau": round(float(tau), 3), "spearman_rho": round(float(rho), 3), "goal_kendall_tau": 0.6,
               "supernet_train_s": round(shared.seconds, 1), "subnet_eval_s_median": round(sorted(seconds)[len(seconds) // 2], 2),
               "largest_val_accuracy": shared.largest_val_accuracy, "cpu": cpu}
    print(f"\nKendall tau {tau:.3f} (goal >= 0.6), Spearman rho {rho:.3f}, {len(rows)} networks; "
          f"supernet {supernet.epochs:g} epochs vs {args.scratch_epochs:g} epochs from scratch; "
          f"one subnet scored in {summary['subnet_eval_s_median']} s (median)")
    write_csv(OUT / "supernet_fidelity.csv", [{**row, "kendall_tau": summary["kendall_tau"],
                                               "spearman_rho": summary["spearman_rho"]} for row in rows])
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
