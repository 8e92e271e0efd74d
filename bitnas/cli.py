"""`bitnas` command line. Bad input ends in one line on stderr and exit code 2, before anything is
created; heavy libraries (torch, ray, mlflow) are imported only once the input has been checked.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line: `bitnas: error: ...`."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"bitnas: error: {message} (see `{self.prog} --help`)\n")


def _integer(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bitnas", description="Search for compact binary and low-bit neural networks.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    search = commands.add_parser("search", help="run (or resume) a multi-objective search",
                                 description="Run or resume a study; flags override the YAML config.")
    search.add_argument("--config", type=Path, help="YAML config (keys as in configs/default.yaml)")
    search.add_argument("--study", help="study name; an existing study of that name is resumed")
    search.add_argument("--trials", type=_integer, help="completed trials the study should reach in total "
                                                              "(with --schedule asha: new networks, not promotions)")
    search.add_argument("--time-budget", type=_number, dest="time_budget_s", metavar="SECONDS",
                        help="propose no new trial after this much wall time (finalists are trained after it)")
    search.add_argument("--epochs", type=_number, help="training epochs per trial (may be fractional)")
    search.add_argument("--workers", type=_integer, help="trials evaluated at the same time (Ray tasks)")
    search.add_argument("--seed", type=_integer, help="seed of the sampler, data split and training")
    search.add_argument("--results", help="results directory (study storage, MLflow store, exports)")
    search.add_argument("--storage", help="Optuna RDB URL for the study, e.g. postgresql://user@host:5432/db "
                                          "(default: a journal file under the results directory)")
    search.add_argument("--sampler", help="random, tpe, nsga2, gp or local")
    search.add_argument("--schedule", help="none (every trial trains training.epochs) or asha (successive halving "
                                           "from asha.min_epochs, the best continue from their checkpoints)")
    search.add_argument("--ray-address", help="join a running Ray cluster (auto or HOST:PORT) instead of starting one")
    search.add_argument("--tracking-uri", help="record runs in this MLflow tracking server (e.g. http://127.0.0.1:5000) "
                                               "instead of <results>/mlflow.db")

    export = commands.add_parser("export", help="export Pareto-optimal (or chosen) trials as files that run",
                                 description="Write genotype.json, weights.safetensors, model.onnx and a model card.")
    export.add_argument("--study", required=True, help="study name")
    export.add_argument("--results", default="results", help="results directory (default: results)")
    export.add_argument("--trial", type=_integer, help="export this trial number instead of the Pareto front")
    export.add_argument("--pareto", action="store_true", help="export every feasible Pareto-optimal trial (the default)")
    export.add_argument("--best", help="export the one best trial by this metric (accuracy, latency_ms, energy_uj, "
                                       "size_kb, ops, params) among those within the budgets")
    export.add_argument("--max-latency-ms", type=_number, help="only trials at most this latency")
    export.add_argument("--max-energy-uj", type=_number, help="only trials at most this energy per inference")
    export.add_argument("--max-size-kb", type=_number, help="only trials at most this model size")
    export.add_argument("--min-accuracy", type=_number, help="only trials with at least this validation accuracy")
    export.add_argument("--epochs", type=_number, help="retrain the chosen network from scratch for this many epochs")
    export.add_argument("--distill", action="store_true", help="with --epochs or --prune: learn from a full-precision "
                                                               "teacher")
    export.add_argument("--prune", type=_number, metavar="R", help="remove this share (0 < R < 1) of every stage's "
                                                                   "output channels, then fine-tune")
    export.add_argument("--prune-epochs", type=_number, metavar="N", help="with --prune: fine-tune for N epochs "
                                                                          "(default: a third of --epochs, else 2)")
    export.add_argument("--prune-criterion", choices=("l1", "bn"), help="with --prune: channel importance, L1 of the "
                                                                         "conv's latent weights (l1, the default) or "
                                                                         "BatchNorm |gamma| (bn)")
    export.add_argument("--register", metavar="NAME", help="register the export in the MLflow model registry as NAME")
    export.add_argument("--tracking-uri", help="the study's MLflow tracking server, if it is not <results>/mlflow.db")
    export.add_argument("--storage", help="Optuna RDB URL the study lives in (default: the results directory's journal)")

    run = commands.add_parser("run", help="classify an image with an exported packed model",
                              description="Load MODEL_DIR/model.bitnas.npz (no pickle) and classify an image file.")
    run.add_argument("model_dir", type=Path, help="an export folder (bitnas export) or its model.bitnas.npz")
    run.add_argument("--image", type=Path, required=True, help="image file (PNG, JPEG, ...); resized as in training")
    run.add_argument("--top", type=_integer, default=3, help="classes to list (default: 3)")

    bench = commands.add_parser("bench", help="measure an exported model's latency on this machine",
                                description="Batch-1 latency of the packed model, torch and onnxruntime, side by side.")
    bench.add_argument("model_dir", type=Path, help="an export folder (bitnas export)")
    bench.add_argument("--runs", type=_integer, default=50, help="timed runs after warm-up (default: 50)")
    bench.add_argument("--threads", type=_integer, default=1, help="threads (default: 1)")

    ui = commands.add_parser("ui", help="open the MLflow UI on a results directory (loopback by default)",
                             description="Start the MLflow UI for <results>/mlflow.db and print its URL.")
    ui.add_argument("--results", default="results", help="results directory (default: results)")
    ui.add_argument("--port", type=_integer, default=5000, help="port (default: 5000)")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")

    costs = commands.add_parser("costs", help="print a network's costs and per-layer table",
                                description="Params, size, BOPs, FLOPs, OPs, ACE, low-bit MACs and memory traffic "
                                            "of a genotype file or a reference network.")
    costs.add_argument("genotype", nargs="?", type=Path, help="genotype JSON file (or give --baseline)")
    costs.add_argument("--baseline", help="a reference network, e.g. birealnet18, reactnet_a, bireal_small")
    costs.add_argument("--input-size", type=_integer, help="input height and width (default: the network's own)")
    costs.add_argument("--in-channels", type=_integer, help="input channels (default: the network's own)")
    costs.add_argument("--classes", type=_integer, help="number of classes (default: the network's own)")
    costs.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    return parser


def _search(args: argparse.Namespace) -> int:
    from bitnas.search.config import load_config

    overrides = {key: getattr(args, key) for key in
                 ("study", "trials", "time_budget_s", "epochs", "workers", "seed", "results", "storage", "sampler",
                  "schedule", "ray_address", "tracking_uri")}
    config = load_config(args.config, overrides)  # raises ConfigError before anything exists

    from bitnas.search.driver import run_search
    from bitnas.search.summary import summary_text

    outcome = run_search(config)
    print(summary_text(outcome, config))
    return EXIT_INTERRUPTED if outcome.interrupted else 0


def _export(args: argparse.Namespace) -> int:
    from bitnas.search.config import STUDY_NAME, ConfigError

    if not STUDY_NAME.match(args.study):
        raise ConfigError(f"--study: {args.study!r} is not a valid study name")
    if args.trial is not None and args.trial < 0:
        raise ConfigError(f"--trial: must be >= 0 (got {args.trial})")
    budgets = {key: getattr(args, key) for key in ("max_latency_ms", "max_energy_uj", "max_size_kb", "min_accuracy")
               if getattr(args, key) is not None}
    if args.trial is not None and (args.pareto or args.best or budgets):
        raise ConfigError("--trial names one trial; it cannot be combined with --pareto, --best or budgets")
    if args.pareto and args.best:
        raise ConfigError("--pareto exports the whole front and --best one trial: give one of them")
    if args.epochs is not None and not 0 < args.epochs <= 1000:
        raise ConfigError(f"--epochs: must be in (0, 1000] (got {args.epochs:g})")
    if args.distill and args.epochs is None and args.prune is None:
        raise ConfigError("--distill retrains or fine-tunes the network: give --epochs or --prune too")
    if args.prune is not None and not 0 < args.prune < 1:
        raise ConfigError(f"--prune: the share of channels to remove must be in (0, 1) (got {args.prune:g})")
    if args.prune is None and (args.prune_epochs is not None or args.prune_criterion is not None):
        raise ConfigError("--prune-epochs and --prune-criterion apply to pruning: give --prune too")
    if args.prune_epochs is not None and not 0 < args.prune_epochs <= 1000:
        raise ConfigError(f"--prune-epochs: must be in (0, 1000] (got {args.prune_epochs:g})")
    from bitnas.export import ExportOptions, Selection, export_study

    options = ExportOptions(selection=Selection(trial=args.trial, best=args.best, budgets=budgets), epochs=args.epochs,
                            distill=args.distill, register=args.register, tracking_uri=args.tracking_uri,
                            prune=args.prune, prune_epochs=args.prune_epochs,
                            **({"prune_criterion": args.prune_criterion} if args.prune_criterion else {}))

    def report(directory: Path) -> None:  # each trial as it is written: a long retraining shows progress
        note = f"  (registered as {args.register})" if (directory / "registered.json").is_file() else ""
        print(f"exported {directory}{note}", flush=True)

    export_study(Path(args.results), args.study, storage=args.storage, options=options, out=report)
    return 0


def _run(args: argparse.Namespace) -> int:
    from bitnas.export import classify

    prediction = classify(args.model_dir, args.image, top=max(1, args.top))
    print(f"{args.image}: class {prediction.label}")
    for label, probability in prediction.probabilities:
        print(f"  {label:<12} {probability:.4f}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    if args.runs < 1 or args.threads < 1:
        from bitnas.search.config import ConfigError

        raise ConfigError("--runs and --threads must be >= 1")
    from bitnas.export.packed_model import bench, format_bench, write_bench

    result = bench(args.model_dir, runs=args.runs, threads=args.threads)
    print(format_bench(result))
    try:
        print(f"wrote {write_bench(args.model_dir, result)}")
    except OSError:
        pass  # a read-only export folder: the table above is the result
    return 0


def _ui(args: argparse.Namespace) -> int:
    from bitnas.search.ui import serve_ui

    return serve_ui(Path(args.results), host=args.host, port=args.port)


def _costs(args: argparse.Namespace) -> int:
    from bitnas.spaces.summary import costs_command

    print(costs_command(args.genotype, args.baseline, input_size=args.input_size, in_channels=args.in_channels,
                        num_classes=args.classes, as_json=args.json))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from bitnas.errors import RunFailed, UserError

    try:
        if args.command == "search":
            return _search(args)
        if args.command == "costs":
            return _costs(args)
        if args.command in ("run", "bench", "ui"):
            return {"run": _run, "bench": _bench, "ui": _ui}[args.command](args)
        return _export(args)
    except UserError as error:
        print(f"bitnas: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RunFailed as error:
        print(f"bitnas: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("bitnas: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
