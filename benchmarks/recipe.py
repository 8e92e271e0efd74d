"""Which training levers make a fully binary network nearly as accurate as a float one on mnist5k?

An ablation, seeded, on one fully binary network (every hidden conv 1-bit in weights and
activations, binary downsampling; stem and classifier full precision or 8 bit): the default
binary recipe, then each lever alone on top of it, then the two that paid most alone, together. Levers:
- teacher: distillation (ReActNet's distributional loss) from a float CNN trained once and cached;
- two_step: ReActNet's two-step training (real weights with binary activations first);
- augment: random shifts and rotations of up to 10 degrees (never flips: digits);
- stem8: an 8-bit stem instead of a float one;
- longer: twice the epochs;
- wide: the same network 1.5x wider (stem and every stage; the search space's width lever).
Every run returns the weights of its best validated epoch (`keep_best`, as `bitnas export`
retrains). The ablation is judged on the validation split. The chosen recipe is the single case with the best
validation accuracy, the pair included: levers measured one at a time do not add up (all that
paid alone, together, lost 2.6 points to `longer` alone at 24 epochs), so only the best two are
combined. The test split is read once, for the final
figures: on that very trained network (kept from its ablation run, not trained again), and on
its float twin (same topology, fp32, same budget), trained for the stretch goal.

Goal: a fully binary network >= 0.97 test accuracy; stretch: within 1 point of its float twin.
`best_fully_binary_test_acc` in the JSON is the headline. Runs two trainings at a time (one
thread each), the longest queued first: the pair of the two long levers (`longer`, `wide`) and its
float twin start with the ablation, the best single lever's twin as soon as the ablation is known.
Writes results/bench/recipe.csv (recipe_quick.csv with --quick; recipe_final_<levers>.csv with
--final, _seed<N> appended for a seed other than 0).

    python benchmarks/recipe.py [--quick] [--epochs N] [--json]
    python benchmarks/recipe.py --final wide longer --json   # no ablation: these levers together, tested
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from pathlib import Path

import torch

from bitnas.evaluators import TrainingConfig, accuracy, load_dataset, load_or_train_teacher
from bitnas.evaluators.recipes import BINARY_RETRAINING
from bitnas.evaluators.train import train
from bitnas.spaces import Genotype, build_model, count_costs, genotype_costs
from bitnas.spaces.baselines import small_baselines

from _output import write_csv  # noqa: E402

OUT = Path("results/bench")
LEVERS = ("teacher", "two_step", "augment", "stem8", "longer", "wide")
LONG_LEVERS = ("longer", "wide")  # the ablation's longest runs
WIDE = 1.5
NET = "reactnet_small"


def fully_binary(model: torch.nn.Module, input_shape) -> bool:
    """Every conv but the stem, shortcuts included, 1-bit in weights and activations (spaces/costs.py)."""
    return count_costs(model, input_shape).not_fully_binary() is None


def float_twin(genotype: Genotype) -> Genotype:
    """The same topology in fp32: every stage's bits at 32 (reactnet blocks take them), fp stem and head."""
    data = genotype.to_dict()
    data["stem_bits"], data["head_bits"] = 32, 32
    data["stages"] = [{**stage, "weight_bits": 32, "activation_bits": 32} for stage in data["stages"]]
    return Genotype.from_dict(data)


def with_levers(genotype: Genotype, levers: tuple[str, ...], base: TrainingConfig) -> tuple[Genotype, TrainingConfig]:
    config = base.model_copy(update={
        "two_step": "two_step" in levers,
        "augment": "shift_rotate" if "augment" in levers else "none",
        "epochs": base.epochs * (2 if "longer" in levers else 1)})
    if "stem8" in levers:
        genotype = Genotype.from_dict({**genotype.to_dict(), "stem_bits": 8})
    if "wide" in levers:
        genotype = widened(genotype, WIDE)
    return genotype, config


def widened(genotype: Genotype, factor: float) -> Genotype:
    """Stem and stage widths times `factor`, in multiples of 8 (the engine's output lanes)."""
    scale = lambda width: max(8, int(round(width * factor / 8)) * 8)  # noqa: E731
    data = genotype.to_dict()
    data["stem_width"] = scale(data["stem_width"])
    data["stages"] = [{**stage, "width": scale(stage["width"])} for stage in data["stages"]]
    return Genotype.from_dict(data)


def run(job: dict) -> dict:
    """One training (in a worker process, one thread): val and, for final runs, test accuracy.
    The trained weights are saved under `job["keep"]`, so the chosen run can be tested later."""
    torch.set_num_threads(1)
    data = load_dataset("mnist5k", job["seed"])
    genotype = Genotype.from_json(job["genotype"])
    config = TrainingConfig.model_validate(job["config"])
    teacher = None
    if job["teacher_dir"]:
        teacher = load_or_train_teacher(job["teacher_dir"], "mnist5k", job["seed"], epochs=job["teacher_epochs"],
                                        threads=1).model()
    torch.manual_seed(job["seed"])
    model = build_model(genotype)
    started = time.perf_counter()
    outcome = train(model, data.train, data.val, config, seed=job["seed"], teacher=teacher)
    model.eval()
    torch.save(model.state_dict(), job["keep"])
    return {"case": job["case"], "levers": " ".join(job["levers"]) or "-", "epochs": config.epochs,
            "fully_binary": fully_binary(model, data.input_shape), "val_acc": round(accuracy(model, data.val), 4),
            "test_acc": round(accuracy(model, data.test), 4) if job["final"] else None, "kept_epoch": outcome.kept_epoch,
            "train_seconds": round(time.perf_counter() - started, 1),
            "val_curve": " ".join(f"{a:.4f}" for a in outcome.epoch_val_accuracy), "genotype": genotype.short(),
            "genotype_json": job["genotype"], "keep": job["keep"]}


def tested(row: dict, seed: int) -> dict:
    """The test accuracy of a run's kept network (read once, for the final figure)."""
    data = load_dataset("mnist5k", seed)
    model = build_model(Genotype.from_json(row["genotype_json"]))
    model.load_state_dict(torch.load(row["keep"], weights_only=True))
    return {**row, "case": "chosen recipe", "test_acc": round(accuracy(model.eval(), data.test), 4)}


def job(case: str, genotype: Genotype, levers: tuple[str, ...], base: TrainingConfig, args, teacher_dir: str,
        final: bool = False) -> dict:
    genotype, config = with_levers(genotype, levers, base)
    return {"case": case, "genotype": genotype.to_json(), "config": config.model_dump(mode="json"), "levers": levers,
            "seed": args.seed, "teacher_dir": teacher_dir if "teacher" in levers else "",
            "teacher_epochs": args.teacher_epochs, "final": final,
            # Two float twins (of different levers) may train at once: the levers keep their files apart.
            "keep": str(Path(teacher_dir) / f"{'_'.join([case.strip('+'), *levers]).replace(' ', '_')}.pt")}


def pair_of(pool, genotype: Genotype, levers: tuple[str, ...], base: TrainingConfig, args, teacher_dir: str):
    """Start the run of two levers together (its case named after both)."""
    return pool.apply_async(run, (job("+" + " +".join(levers), genotype, levers, base, args, teacher_dir),))


def twin_of(pool, genotype: Genotype, levers: tuple[str, ...], base: TrainingConfig, args, teacher_dir: str):
    """Start the float twin of `levers`: the topology levers applied, then fp32, with the schedule levers."""
    twin_genotype, _ = with_levers(genotype, tuple(lever for lever in levers if lever in ("stem8", "wide")), base)
    return pool.apply_async(run, (job("float twin", float_twin(twin_genotype),
                                      tuple(lever for lever in levers if lever in ("augment", "longer")),
                                      base, args, teacher_dir, final=True),))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=float, default=12)
    parser.add_argument("--teacher-epochs", type=float, default=12)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="3 epochs, a 3-epoch teacher, no 'longer' or 'wide' lever, no pair (< 5 min)")
    parser.add_argument("--final", nargs="+", choices=LEVERS, metavar="LEVER",
                        help="no ablation: train these levers together (and the float twin) and read the test split")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.teacher_epochs = 3, 3
    levers = tuple(lever for lever in LEVERS if not (args.quick and lever in ("longer", "wide")))
    data = load_dataset("mnist5k", args.seed)
    genotype = small_baselines(input_size=data.input_size, in_channels=data.in_channels,
                               num_classes=data.num_classes)[NET]
    # Every run keeps its best validated epoch's weights, as export's retraining does (a long
    # binary run can collapse in its last epochs: evaluators/settings.py, `keep_best`).
    base = TrainingConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          keep_best=BINARY_RETRAINING["keep_best"])
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as teacher_dir, context.Pool(2) as pool:
        teacher, wants_teacher = None, not args.final or "teacher" in args.final
        if wants_teacher:
            # The teacher first (cached in teacher_dir for every run that distils).
            teacher_started = time.perf_counter()
            teacher_async = pool.apply_async(load_or_train_teacher, (teacher_dir, "mnist5k", args.seed),
                                             {"epochs": args.teacher_epochs, "threads": 1})
        rows = []
        ablation = {}
        speculative = {}
        if not args.final:
            if not args.quick:
                # The pair of the two long levers is the one every full run so far has tried (they
                # paid most alone on both CPUs measured): it and its float twin, the longest runs
                # of all, start at once instead of after the ablation, where they were a serial
                # tail of 12 minutes with one core half idle. Another pair, should the ablation
                # pick one, trains after it as before.
                speculative["pair"] = pair_of(pool, genotype, LONG_LEVERS, base, args, teacher_dir)
                speculative["twin"] = twin_of(pool, genotype, LONG_LEVERS, base, args, teacher_dir)
            # Every run that needs no teacher is queued at once, the longest first (`longer` and
            # `wide` train about twice as long), so neither core idles while the teacher trains
            # or at the end of the ablation.
            for lever in sorted((None, *levers), key=lambda lever: lever not in LONG_LEVERS):
                if lever != "teacher":
                    ablation[lever] = pool.apply_async(run, (job(f"+{lever}" if lever else "base", genotype,
                                                                 (lever,) if lever else (), base, args, teacher_dir),))
        if wants_teacher:
            teacher = teacher_async.get()
            print(f"teacher (float CNN): val {teacher.val_accuracy:.4f} test {teacher.test_accuracy:.4f} after "
                  f"{args.teacher_epochs:g} epochs ({time.perf_counter() - teacher_started:.0f}s)", flush=True)
        if args.final:  # the levers given, together, on the test split at once: no ablation
            chosen = tuple(args.final)
            final_async = pool.apply_async(run, (job("chosen recipe", genotype, chosen, base, args, teacher_dir,
                                                     final=True),))
        else:
            if "teacher" in levers:  # queued once the teacher is cached, lest its run train one of its own
                ablation["teacher"] = pool.apply_async(run, (job("+teacher", genotype, ("teacher",), base, args,
                                                                 teacher_dir),))
            for lever in (None, *levers):  # the table in LEVERS order, the base first
                rows.append(ablation[lever].get())
                print(f"  {rows[-1]['case']:<15} val {rows[-1]['val_acc']:.4f}  ({rows[-1]['train_seconds']:.0f}s)",
                      flush=True)
            # The two levers that paid most alone, together: the one combination the ablation tries
            # (all that paid, together, lost to `longer` alone in session 5).
            paid = sorted((r for r in rows[1:] if r["val_acc"] > rows[0]["val_acc"]), key=lambda r: -r["val_acc"])
            pair = tuple(lever for lever in levers if lever in {r["case"][1:] for r in paid[:2]})
            twins = {}
            if len(pair) == 2 and not args.quick:  # --quick stays a < 5 min smoke run
                # The best single lever's float twin is queued now, before the pair is known to
                # win or lose, so that it trains beside the pair's end rather than after it.
                single = max(rows, key=lambda r: r["val_acc"])
                single_levers = tuple(single["levers"].split()) if single["case"] != "base" else ()
                if pair == LONG_LEVERS:
                    pair_async, twins[pair] = speculative["pair"], speculative["twin"]
                else:
                    pair_async = pair_of(pool, genotype, pair, base, args, teacher_dir)
                    twins[pair] = twin_of(pool, genotype, pair, base, args, teacher_dir)
                if single_levers not in twins:
                    twins[single_levers] = twin_of(pool, genotype, single_levers, base, args, teacher_dir)
                rows.append(pair_async.get())
                print(f"  {rows[-1]['case']:<15} val {rows[-1]['val_acc']:.4f}  ({rows[-1]['train_seconds']:.0f}s)",
                      flush=True)
            best = max(rows, key=lambda r: r["val_acc"])  # the first of equals: base before any lever
            chosen = tuple(best["levers"].split()) if best["case"] != "base" else ()
            twin_async = twins.get(chosen)
        if args.final or twin_async is None:
            twin_async = twin_of(pool, genotype, chosen, base, args, teacher_dir)
        rows.append(final_async.get() if args.final else tested(best, args.seed))
        rows.append(twin_async.get())
        for row in rows[-2:]:
            print(f"  {row['case']:<15} levers {row['levers']}: val {row['val_acc']:.4f} test {row['test_acc']:.4f}",
                  flush=True)
    for row in rows:
        row.pop("genotype_json", None)
        row.pop("keep", None)
    name = "recipe_quick.csv" if args.quick else "recipe.csv"
    if args.final:
        name = f"recipe_final_{'_'.join(args.final)}{f'_seed{args.seed}' if args.seed else ''}.csv"
    write_csv(OUT / name, rows)
    print(f"\n{'case':<15} {'levers':<36} {'epochs':>6} {'kept':>5} {'val_acc':>8} {'test_acc':>8} {'seconds':>8} "
          "fully_binary")
    for row in rows:
        test = f"{row['test_acc']:.4f}" if row["test_acc"] is not None else "-"
        print(f"{row['case']:<15} {row['levers']:<36} {row['epochs']:>6g} {row['kept_epoch'] or '-':>5} "
              f"{row['val_acc']:>8.4f} {test:>8} "
              f"{row['train_seconds']:>8.0f} {row['fully_binary']}")
    qualifies = {}
    for name, reference in small_baselines(input_size=data.input_size, in_channels=data.in_channels,
                                           num_classes=data.num_classes).items():
        odd = genotype_costs(reference).not_fully_binary()
        qualifies[name] = "fully binary" if odd is None else f"not: {odd.name} is w{odd.weight_bits}/a{odd.input_bits}"
    print("fully binary (every conv after the stem, shortcuts included, 1-bit weights and activations): "
          + "; ".join(f"{name} {verdict}" for name, verdict in qualifies.items()))
    final_binary, twin = rows[-2], rows[-1]
    effects = {} if args.final else {r["case"][1:]: round(r["val_acc"] - rows[0]["val_acc"], 4)
                                     for r in rows[1:1 + len(levers)]}
    print(f"lever effects on validation accuracy (points of 1, each alone on the base recipe): {effects}")
    print(f"goal: a fully binary network >= 0.97 test accuracy: {final_binary['genotype']} with "
          f"{final_binary['levers']} "
          f"{final_binary['test_acc']:.4f} -> {'met' if final_binary['test_acc'] >= 0.97 else 'NOT met'}; stretch: "
          f"within 1 point of its float twin ({twin['test_acc']:.4f}) -> "
          f"{'met' if final_binary['test_acc'] >= twin['test_acc'] - 0.01 else 'NOT met'}; "
          f"{time.perf_counter() - started:.0f}s in all")
    if args.json:
        print(json.dumps({"teacher_test_acc": teacher.test_accuracy if teacher else None,
                          "teacher_val_acc": teacher.val_accuracy if teacher else None,
                          "epochs": args.epochs, "lever_effects_val": effects, "chosen_levers": list(chosen),
                          "best_fully_binary_test_acc": final_binary["test_acc"] if final_binary["fully_binary"] else None,
                          "float_twin_test_acc": twin["test_acc"], "references_fully_binary": qualifies,
                          "runs": [{k: v for k, v in r.items() if k != "val_curve"} for r in rows]}))


if __name__ == "__main__":
    main()
