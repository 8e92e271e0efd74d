"""Structured channel pruning of a trained fully binary network: test accuracy before pruning,
right after it (per importance criterion, raw and with BatchNorm statistics recomputed) and after
fine-tuning, model size, and batch-1 latency on the packed engine before and after (the two
measured in alternating rounds, side by side, for each ratio).

Goal (pruning issue): at 25% of the channels removed, test accuracy within 1 point of the
unpruned network's and latency >= 1.25x lower. The network pruned by default is the best fully
binary one found (benchmarks/recipe.py): `reactnet_small` (spaces/baselines.py) twice as wide, stem
32 and stages 64/128/256, which reaches the recipe's accuracy (0.967 test after 15 epochs without a
teacher, 0.972 distilled for 24) and is wide enough at 28x28 for pruning to shorten its convs:
`--wide 1` prunes reactnet_small itself, whose 28x28 convs gain little from it (at 16-32
channels a conv costs mostly per-pixel work that does not shrink with the outputs). ReActNet's
widths double by its duplicated 1x1 convs, so pruning keeps the same share of the stem's channels
all through the network. Writes results/bench/pruning.csv for `--wide 1`, pruning_wide<F>.csv otherwise
(`--quick`: pruning_quick..., rough figures from a short training).

    python benchmarks/pruning.py [--net reactnet_small] [--wide 2] [--epochs 15] [--ratios 0.25 0.5] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from statistics import median

import torch
from pydantic import ValidationError

from bitnas.evaluators import LatencyConfig, TrainingConfig, accuracy, load_dataset, load_or_train_teacher
from bitnas.evaluators.latency import measure_side_by_side
from bitnas.evaluators.train import recalibrate_batchnorm, train
from bitnas.spaces import build_model, count_costs
from bitnas.spaces.baselines import small_baselines
from bitnas.spaces.pruning import CRITERIA, DEFAULT_CRITERION, prune

from _output import write_csv  # noqa: E402
from recipe import widened  # noqa: E402

OUT = Path("results/bench")


ROUNDS = 7  # latency: unpruned and pruned measured in turn this often, side by side


def latency_pair(before: torch.nn.Module, after: torch.nn.Module, data, config: LatencyConfig):
    """Median latency of each network, the median of the per-round ratios before / after, and the
    ratio of the minima, from alternating rounds (`measure_side_by_side`: the unpruned network
    read 0.53-0.93 ms in one run on this VM, so each ratio comes from two measurements side by side)."""
    rounds = measure_side_by_side(before, after, data.input_shape, config, ROUNDS)
    return (median(b.median_ms for b, _ in rounds), median(a.median_ms for _, a in rounds),
            median(b.median_ms / a.median_ms for b, a in rounds),
            min(b.min_ms for b, _ in rounds) / min(a.min_ms for _, a in rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--net", default="reactnet_small")
    parser.add_argument("--wide", type=float, default=2.0,
                        help="widen the network's stem and stages by this factor first (1: as designed)")
    parser.add_argument("--epochs", type=float, default=15, help="training of the unpruned network")
    parser.add_argument("--prune-epochs", type=float, help="fine-tuning after pruning (default: a third of --epochs)")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.5])
    parser.add_argument("--criteria", nargs="+", choices=CRITERIA, default=list(CRITERIA),
                        help="criteria compared right after pruning; each is fine-tuned unless --quick")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument("--distill", action="store_true", help="train and fine-tune from the full-precision teacher")
    parser.add_argument("--quick", action="store_true",
                        help="2 training epochs, half an epoch of fine-tuning, only the default criterion fine-tuned "
                             "(< 5 min on 2 idle cores)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.prune_epochs, args.latency_runs = 2, args.prune_epochs or 0.5, 50
    fine_tune_epochs = args.prune_epochs if args.prune_epochs is not None else args.epochs / 3
    # Checked before anything is trained, so that a bad flag costs a line, not a traceback after minutes.
    if not all(0 < ratio < 1 for ratio in args.ratios):
        parser.error(f"--ratios: each a share of the channels between 0 and 1 (got {args.ratios})")
    if args.threads < 1:
        parser.error(f"--threads: at least 1 (got {args.threads})")
    try:
        config = TrainingConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
        latency_config = LatencyConfig(runs=args.latency_runs, threads=1, target="cpu")
    except ValidationError as error:
        first = error.errors()[0]
        flag = {"epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr", "runs": "--latency-runs"}.get(
            str(first["loc"][0]), str(first["loc"][0]))
        parser.error(f"{flag}: {first['msg']} (got {first['input']})")
    if fine_tune_epochs <= 0:
        parser.error(f"--prune-epochs: more than 0 (got {fine_tune_epochs:g})")
    torch.set_num_threads(args.threads)
    data = load_dataset("mnist5k", args.seed)
    genotype = small_baselines(input_size=data.input_size, in_channels=data.in_channels,
                               num_classes=data.num_classes)[args.net]
    label, suffix = args.net, ""  # the row's network and the CSV's name
    if args.wide != 1:
        genotype = widened(genotype, args.wide)
        label, suffix = f"{args.net} x{args.wide:g}", f"_wide{args.wide:g}"
    teacher = None
    if args.distill:
        with tempfile.TemporaryDirectory() as scratch:
            teacher = load_or_train_teacher(scratch, "mnist5k", args.seed, epochs=3 if args.quick else 8).model()

    started = time.perf_counter()
    torch.manual_seed(args.seed)
    model = build_model(genotype)
    train(model, data.train, data.val, config, seed=args.seed, teacher=teacher)
    model.eval()
    base_acc = accuracy(model, data.test)
    base_size = count_costs(model, data.input_shape).size_kb
    print(f"{label} trained {args.epochs:g} epochs ({time.perf_counter() - started:.0f}s): test acc {base_acc:.4f}, "
          f"{base_size:.1f} KiB", flush=True)

    calibration = data.train.images[torch.randperm(len(data.train), generator=torch.Generator().manual_seed(args.seed))[:512]]
    rows = []
    for ratio in args.ratios:
        for criterion in args.criteria:
            result = prune(model, genotype, ratio, criterion=criterion)
            pruned = result.model.eval()
            raw = accuracy(pruned, data.test)
            recalibrated = build_model(result.genotype)
            recalibrated.load_state_dict(pruned.state_dict())
            recalibrate_batchnorm(recalibrated, calibration)
            recal = accuracy(recalibrated.eval(), data.test)
            row = {"net": label, "ratio": ratio, "criterion": criterion, "genotype": result.genotype.short(),
                   "epochs": args.epochs, "fine_tune_epochs": fine_tune_epochs, "distill": args.distill,
                   "test_acc_before": round(base_acc, 4), "test_acc_pruned": round(raw, 4),
                   "test_acc_pruned_bn_recal": round(recal, 4), "test_acc_fine_tuned": None,
                   "size_kb_before": round(base_size, 2), "size_kb_after": round(count_costs(pruned, data.input_shape).size_kb, 2),
                   "latency_ms_before": None, "latency_ms_after": None, "latency_ratio": None,
                   "min_latency_ratio": None, "fine_tune_seconds": None, "goal_met": None}
            if not args.quick or criterion == DEFAULT_CRITERION:
                tuned_started = time.perf_counter()
                torch.manual_seed(args.seed)
                train(pruned, data.train, data.val, config.model_copy(update={"epochs": fine_tune_epochs}),
                      seed=args.seed, teacher=teacher)
                pruned.eval()
                base_latency, after, speedup, min_speedup = latency_pair(model, pruned, data, latency_config)
                tuned = accuracy(pruned, data.test)
                row.update(test_acc_fine_tuned=round(tuned, 4), latency_ms_before=round(base_latency, 4),
                           latency_ms_after=round(after, 4), latency_ratio=round(speedup, 3),
                           min_latency_ratio=round(min_speedup, 3),
                           fine_tune_seconds=round(time.perf_counter() - tuned_started, 1))
                if ratio == 0.25:
                    row["goal_met"] = tuned >= base_acc - 0.01 and speedup >= 1.25
            rows.append(row)
            print(f"  ratio {ratio:.2f} {criterion:<3} pruned {raw:.4f} (BN recomputed {recal:.4f})"
                  + (f" fine-tuned {row['test_acc_fine_tuned']:.4f}, {row['size_kb_after']:.1f} KiB, latency "
                     f"{row['latency_ms_after']:.3f} ms ({row['latency_ratio']:.2f}x)" if row["latency_ratio"] else ""),
                  flush=True)
    name = ("pruning_quick" if args.quick else "pruning") + suffix + ".csv"
    write_csv(OUT / name, rows)
    print(f"\n{'ratio':>5} {'crit':<4} {'acc':>7} {'pruned':>7} {'recal':>7} {'tuned':>7} {'KiB':>7} {'ms':>13} {'speedup':>7}")
    for row in rows:
        tuned = f"{row['test_acc_fine_tuned']:.4f}" if row["test_acc_fine_tuned"] is not None else "-"
        ms = f"{row['latency_ms_before']:.3f}->{row['latency_ms_after']:.3f}" if row["latency_ms_after"] is not None else "-"
        speed = f"{row['latency_ratio']:.2f}x" if row["latency_ratio"] is not None else "-"
        print(f"{row['ratio']:>5.2f} {row['criterion']:<4} {row['test_acc_before']:>7.4f} {row['test_acc_pruned']:>7.4f} "
              f"{row['test_acc_pruned_bn_recal']:>7.4f} {tuned:>7} {row['size_kb_after']:>7.1f} {ms:>13} {speed:>7}")
    goal = [r for r in rows if r["goal_met"] is not None]
    if goal:
        print("goal at 25%: accuracy within 1 point and latency >= 1.25x lower: "
              + ", ".join(f"{r['criterion']} {'met' if r['goal_met'] else 'NOT met'}" for r in goal))
    print(f"wrote {OUT / name}")
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
