"""Binary networks trained with the default recipe, with and without distillation: test accuracy
on mnist5k, epochs and wall time.

Goal (issue 5): a fully binary network (every hidden conv 1-bit; stem and head may stay full
precision) reaches >= 97% test accuracy on mnist5k. The small reference networks
(`bitnas.spaces.baselines`): `reactnet_small` is fully binary (its downsampling is binary too);
`bireal_small` keeps Bi-Real's full-precision 1x1 downsampling shortcuts. The teacher is the
full-precision CNN of `evaluators/distill.py`, trained once and cached. Writes
results/bench/recipe.csv.

    python benchmarks/recipe.py [--nets bireal_small reactnet_small] [--epochs N] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from bitnas.evaluators import TrainingConfig, accuracy, load_dataset, load_or_train_teacher
from bitnas.evaluators.train import train
from bitnas.spaces import build_model, count_costs
from bitnas.spaces.baselines import small_baselines

from _output import write_csv  # noqa: E402

OUT = Path("results/bench")


def fully_binary(model: torch.nn.Module, input_shape) -> bool:
    """Every conv but the stem is 1-bit in weights and activations (the classifier may be fp)."""
    convs = [layer for layer in count_costs(model, input_shape).layers if layer.kind == "conv"]
    return all(layer.weight_bits == 1 and layer.input_bits == 1 for layer in convs[1:])


def run(net: str, genotype, data, epochs: float, teacher, seed: int, config: TrainingConfig) -> dict:
    torch.manual_seed(seed)
    model = build_model(genotype)
    started = time.perf_counter()
    outcome = train(model, data.train, data.val, config, seed=seed, teacher=teacher.model() if teacher else None)
    seconds = time.perf_counter() - started
    return {"net": net, "distill": teacher is not None, "epochs": epochs, "recipe": outcome.recipe, "augment": config.augment,
            "fully_binary": fully_binary(model, data.input_shape),
            "val_acc": accuracy(model, data.val), "test_acc": accuracy(model, data.test),
            "train_seconds": round(seconds, 1), "val_curve": " ".join(f"{a:.4f}" for a in outcome.epoch_val_accuracy)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", nargs="+", default=["bireal_small", "reactnet_small"])
    parser.add_argument("--epochs", type=float, default=15)
    parser.add_argument("--teacher-epochs", type=float, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--augment", choices=["none", "shift", "shift_flip"], default="none",
                        help="light augmentation (training.augment); digits must not be flipped")
    parser.add_argument("--distill", choices=["both", "off", "on"], default="both",
                        help="train each net without and with the teacher (both), or one of them")
    parser.add_argument("--quick", action="store_true", help="bireal_small only, 4 epochs, a 3-epoch teacher (< 5 min)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.nets, args.epochs, args.teacher_epochs = ["bireal_small"], 4, 3
    torch.set_num_threads(args.threads)
    data = load_dataset("mnist5k", args.seed)
    genotypes = small_baselines(input_size=data.input_size, in_channels=data.in_channels, num_classes=data.num_classes)
    config = TrainingConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, augment=args.augment)
    with tempfile.TemporaryDirectory() as scratch:  # the teacher's cache, as a search keeps it under results/
        started = time.perf_counter()
        teacher = load_or_train_teacher(scratch, "mnist5k", args.seed, epochs=args.teacher_epochs)
        teacher_seconds = time.perf_counter() - started
    print(f"teacher (full precision): test accuracy {teacher.test_accuracy:.4f} after {args.teacher_epochs:g} epochs "
          f"({teacher_seconds:.0f}s)", flush=True)
    rows = []
    for net in args.nets:
        for with_teacher in {"both": (None, teacher), "off": (None,), "on": (teacher,)}[args.distill]:
            row = run(net, genotypes[net], data, args.epochs, with_teacher, args.seed, config)
            rows.append(row)
            print(f"  {net:<16} distill={str(row['distill']):<5} test_acc {row['test_acc']:.4f}  val_acc "
                  f"{row['val_acc']:.4f}  {row['train_seconds']:.0f}s  fully_binary={row['fully_binary']}", flush=True)
    name = "recipe_quick.csv" if args.quick else ("recipe.csv" if args.augment == "none" else f"recipe_{args.augment}.csv")
    write_csv(OUT / name, rows)
    print(f"\n{'net':<16} {'distill':<8} {'epochs':>6} {'test_acc':>9} {'val_acc':>8} {'seconds':>8} fully_binary")
    for row in rows:
        print(f"{row['net']:<16} {str(row['distill']):<8} {row['epochs']:>6g} {row['test_acc']:>9.4f} "
              f"{row['val_acc']:>8.4f} {row['train_seconds']:>8.0f} {row['fully_binary']}")
    binary_rows = [r for r in rows if r["fully_binary"]]
    best = max(binary_rows, key=lambda r: r["test_acc"]) if binary_rows else None
    plain = {r["net"]: r["test_acc"] for r in rows if not r["distill"]}
    gains = {r["net"]: round(r["test_acc"] - plain[r["net"]], 4) for r in rows if r["distill"] and r["net"] in plain}
    print(f"distillation gain (test acc, points of 1): {gains}")
    print("goal: a fully binary network >= 0.97 test accuracy: "
          + (f"best fully binary {best['net']} (distill={best['distill']}) {best['test_acc']:.4f} -> "
             f"{'met' if best['test_acc'] >= 0.97 else 'NOT met'}" if best else "no fully binary network in this run"))
    print(f"wrote {OUT / name}")
    if args.json:
        print(json.dumps({"teacher_test_acc": teacher.test_accuracy, "teacher_seconds": round(teacher_seconds, 1),
                          "epochs": args.epochs, "distill_gain_test_acc": gains,
                          "best_fully_binary_test_acc": best["test_acc"] if best else None,
                          "runs": [{k: v for k, v in r.items() if k != "val_curve"} for r in rows]}))


if __name__ == "__main__":
    main()
