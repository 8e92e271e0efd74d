"""Does the supernet rank networks as training them from scratch does? Kendall tau and Spearman
rho between a network's accuracy read from the one-shot supernet (weights sliced out, fine-tuned
for `finetune_steps`, BatchNorm recalibrated) and its accuracy after `--scratch-epochs` of
stand-alone training, over networks sampled from the default space as the random sampler samples
them (issue 13 goal: tau >= 0.6). Two more scores of the same networks, side by side, say where the
ranking comes from: the supernet's weights alone (no fine-tune), and the same fine-tune steps
from a random initialisation instead of the supernet (the control: what the steps alone give).

Stand-alone results are kept in results/bench/supernet_fidelity_scratch.csv and reused (the
slow half); the supernet comes from its cache under results/ when trained before.

    python benchmarks/supernet_fidelity.py [--networks 30] [--scratch-epochs 2] [--supernet-epochs E]
        [--finetune-steps N] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from scipy import stats

from bitnas.evaluators.engine.isa import isa_path
from bitnas.evaluators.latency import cpu_model

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
    parser.add_argument("--finetune-steps", type=int, default=None, help="default: the search's default")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    from bitnas.evaluators import load_dataset
    from bitnas.evaluators.settings import DataOptions, SupernetConfig
    from bitnas.evaluators.supernet import SupernetSpec, evaluate_subnet, load_subnet
    from bitnas.search.config import SearchConfig
    from bitnas.spaces import build_model

    config = SearchConfig()
    supernet = SupernetConfig(**({"epochs": args.supernet_epochs} if args.supernet_epochs else {}),
                              **({"finetune_steps": args.finetune_steps} if args.finetune_steps is not None else {}))
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
    untuned = supernet.model_copy(update={"finetune_steps": 0})
    scores = {"supernet_tuned": {}, "supernet_only": {}, "control_tuned": {}}
    seconds = []
    for done, genotype in enumerate(genotypes, 1):
        key = genotype.hash()
        begun = time.perf_counter()
        scores["supernet_tuned"][key] = evaluate_subnet(load_subnet(genotype, shared), data.train, data.val,
                                                        supernet, 0, config.training)
        seconds.append(time.perf_counter() - begun)
        scores["supernet_only"][key] = evaluate_subnet(load_subnet(genotype, shared), data.train, data.val, untuned, 0)
        torch.manual_seed(0)
        scores["control_tuned"][key] = evaluate_subnet(build_model(genotype), data.train, data.val, supernet, 0,
                                                       config.training)
        print(f"\r  scored {done}/{len(genotypes)}", end="", flush=True)
    scratch = scratch_results(genotypes, args.scratch_epochs)
    keys = [g.hash() for g in genotypes]
    truth = [scratch[k] for k in keys]
    taus = {name: float(stats.kendalltau([by[k] for k in keys], truth).statistic) for name, by in scores.items()}
    rhos = {name: float(stats.spearmanr([by[k] for k in keys], truth).statistic) for name, by in scores.items()}
    tau, rho = taus["supernet_tuned"], rhos["supernet_tuned"]
    rows = [{"network": g.short(), "hash": g.hash(),
             **{f"{name}_val_accuracy": round(by[g.hash()], 4) for name, by in scores.items()},
             "scratch_val_accuracy": round(scratch[g.hash()], 4)} for g in genotypes]
    print(f"\n{'tuned':>6} {'only':>6} {'ctrl':>6} {'scratch':>8}  network")
    for row in sorted(rows, key=lambda r: -r["scratch_val_accuracy"]):
        print(f"{row['supernet_tuned_val_accuracy']:>6.3f} {row['supernet_only_val_accuracy']:>6.3f} "
              f"{row['control_tuned_val_accuracy']:>6.3f} {row['scratch_val_accuracy']:>8.3f}  {row['network']}")
    steps = supernet.finetune_steps
    print(f"\n{'score':<48} {'Kendall tau':>11} {'Spearman rho':>12}")
    for name, label in (("supernet_tuned", f"supernet + {steps} fine-tune steps (the search's)"),
                        ("supernet_only", "supernet weights alone"),
                        ("control_tuned", f"{steps} steps from a random init (control)")):
        print(f"{label:<48} {taus[name]:>11.3f} {rhos[name]:>12.3f}")
    cpu = f"{cpu_model()} ({isa_path()})"
    summary = {"networks": len(rows), "scratch_epochs": args.scratch_epochs, "supernet_epochs": supernet.epochs,
               "finetune_steps": steps, "kendall_tau": round(tau, 3), "spearman_rho": round(rho, 3),
               "kendall_tau_supernet_only": round(taus["supernet_only"], 3),
               "kendall_tau_control": round(taus["control_tuned"], 3), "goal_kendall_tau": 0.6,
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
