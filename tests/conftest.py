"""Shared fixtures: one local Ray on loopback for the whole session (in-process searches reuse it:
`RayRuntime.start` joins an initialised Ray instead of starting its own), the `bitnas` command run
in-process with its output captured at the file-descriptor level, and one small finished study
that the read-only tests (exports, MLflow views, the UI, `bitnas run`) share."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# Ray must stay on loopback, send no usage statistics and start no dashboard in tests.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# The node's measurement slot and latency cache (evaluators/measurement.py) in a folder of this test
# run: a cached measurement from an earlier run (or from a user's searches) never answers a test.
# Shared by the test processes and the Ray workers they start, as on a real node.
if "BITNAS_NODE_DIR" not in os.environ:
    import tempfile

    os.environ["BITNAS_NODE_DIR"] = tempfile.mkdtemp(prefix="bitnas-test-node-")

# `bitnas` run as a subprocess is this interpreter's console script (the package under test), not
# whatever other installation PATH would find first.
os.environ["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), os.environ.get("PATH", "")))

TESTS = Path(__file__).resolve().parent
# Plugin modules the tests name in `plugins:` (tests/plugins/): importable by this process and, through
# PYTHONPATH (set before Ray starts), by the session Ray's workers and by `bitnas` subprocesses.
PLUGINS = TESTS / "plugins"
sys.path.insert(0, str(PLUGINS))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(PLUGINS), os.environ.get("PYTHONPATH", "")) if p)

# A tiny space on sklearn's 8x8 digits: searches of a few trials take seconds.
TINY_SPACE = {"blocks": ["float", "binary"], "kernels": [3], "stem_widths": [4, 8],
              "stem_pools": [False], "stem_bits": [32], "head_widths": [0], "head_bits": [32],
              "stages": [{"stride": 1, "widths": [4, 8], "depths": [1]}, {"stride": 2, "widths": [8, 16], "depths": [1]}]}

SHARED_STUDY = "views"
SHARED_TRIALS = 3


def shared_study_config(**overrides) -> dict:
    """The config (as YAML data) of the shared study: digits, 3 trials, random sampler, seed 3."""
    return {"dataset": "digits", "workers": 2, "references": [], "seed": 3, "sampler": "random",
            "evaluation": "scratch", "schedule": "none",
            "training": {"epochs": 0.5, "batch_size": 32}, "space": TINY_SPACE, **overrides}


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray on 127.0.0.1 for the session (2 CPUs, no dashboard); shut down at the end."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR, _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()


@dataclass
class Done:
    """What a finished `bitnas` command left: its exit code and everything it wrote on fd 1 and fd 2."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def bitnas_main(capfd, local_ray):
    """Run `bitnas ARGS...` in this process (bitnas.cli.main), on the session Ray; returns a `Done`
    with the exit code and the output captured at the file-descriptor level, like a subprocess's."""
    from bitnas.cli import main

    def run(*args) -> Done:
        capfd.readouterr()  # what earlier steps of the test wrote is not this command's output
        try:
            code = main([str(a) for a in args])
        except SystemExit as stop:  # argparse's usage errors
            code = stop.code if isinstance(stop.code, int) else 1
        out, err = capfd.readouterr()
        return Done(code, out, err)

    return run


def search_in_process(config_data: dict, results: Path, study: str, trials: int, *, folder: Path | None = None):
    """`run_search` in this process with a config from `load_config` (YAML file + flag overrides)."""
    import yaml

    from bitnas.search.config import load_config
    from bitnas.search.driver import run_search

    folder = folder or results.parent
    path = folder / f"{study}.yaml"
    path.write_text(yaml.safe_dump(config_data))
    config = load_config(path, {"results": str(results), "study": study, "trials": trials})
    lines: list[str] = []
    outcome = run_search(config, out=lines.append)
    return outcome, lines


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory, local_ray) -> Path:
    """A results directory holding study `views`: 3 completed trials on digits, searched once per
    session in-process. Read-only for the tests that use it (exports write under results/export)."""
    folder = tmp_path_factory.mktemp("finished_study")
    results = folder / "results"
    outcome, lines = search_in_process(shared_study_config(), results, SHARED_STUDY, SHARED_TRIALS)
    assert outcome.completed == SHARED_TRIALS and not outcome.interrupted, "\n".join(lines)
    return results
