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
    search.add_argument("--trials", type=_integer, help="completed trials the study should reach in total")
    search.add_argument("--epochs", type=_number, help="training epochs per trial (may be fractional)")
    search.add_argument("--workers", type=_integer, help="trials evaluated at the same time (Ray tasks)")
    search.add_argument("--seed", type=_integer, help="seed of the sampler, data split and training")
    search.add_argument("--results", help="results directory (study storage, MLflow store, exports)")
    search.add_argument("--storage", help="Optuna RDB URL for the study, e.g. postgresql://user@host:5432/db "
                                          "(default: a journal file under the results directory)")
    search.add_argument("--sampler", help="tpe, nsga2, random or gp")
    search.add_argument("--ray-address", help="join a running Ray cluster (auto or HOST:PORT) instead of starting one")

    export = commands.add_parser("export", help="export Pareto-optimal (or chosen) trials as files that run",
                                 description="Write genotype.json, weights.safetensors, model.onnx and a model card.")
    export.add_argument("--study", required=True, help="study name")
    export.add_argument("--results", default="results", help="results directory (default: results)")
    export.add_argument("--trial", type=_integer, help="export this trial number instead of the Pareto front")
    export.add_argument("--storage", help="Optuna RDB URL the study lives in (default: the results directory's journal)")

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
                 ("study", "trials", "epochs", "workers", "seed", "results", "storage", "sampler", "ray_address")}
    config = load_config(args.config, overrides)  # raises ConfigError before anything exists

    from bitnas.search.driver import run_search, summary_text

    outcome = run_search(config)
    print(summary_text(outcome, config))
    return EXIT_INTERRUPTED if outcome.interrupted else 0


def _export(args: argparse.Namespace) -> int:
    from bitnas.search.config import STUDY_NAME, ConfigError

    if not STUDY_NAME.match(args.study):
        raise ConfigError(f"--study: {args.study!r} is not a valid study name")
    if args.trial is not None and args.trial < 0:
        raise ConfigError(f"--trial: must be >= 0 (got {args.trial})")
    from bitnas.export import export_study

    written = export_study(Path(args.results), args.study, trial_number=args.trial, storage=args.storage)
    for directory in written:
        print(f"exported {directory}")
    return 0


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
