"""`bitnas export --prune R` on the session's shared study: the pruned, fine-tuned network is
exported with every file, its genotype narrower, its card comparing before and after; bad
pruning flags are one line and exit 2, before anything is read or written."""

from __future__ import annotations

import json
import sys

import pytest

from bitnas.cli import main
from bitnas.spaces import Genotype
from conftest import SHARED_STUDY as STUDY

EXPORT_FILES = {"README.md", "genotype.json", "weights.safetensors", "model.onnx", "model.bitnas.npz", "metrics.json",
                "latency.json", "pareto.png"}


def test_export_prune_writes_a_narrower_fine_tuned_network_and_a_before_after_card(finished_study, bitnas_main):
    from bitnas.search.studies import StudyArchive

    trial = StudyArchive(finished_study, STUDY).completed()[0]
    original = Genotype.from_dict(trial.user_attrs["genotype"])
    done = bitnas_main("export", "--study", STUDY, "--results", finished_study, "--trial", trial.number,
                       "--prune", 0.5, "--prune-epochs", 0.5, "--prune-criterion", "l1")
    assert done.returncode == 0, done.stderr
    folder = finished_study / "export" / STUDY / f"trial-{trial.number}"
    assert EXPORT_FILES <= {p.name for p in folder.iterdir()}
    pruned = Genotype.from_json((folder / "genotype.json").read_text())
    assert [s.width for s in pruned.stages] == [max(1, s.width - int(s.width * 0.5 + 0.5)) for s in original.stages]
    metrics = json.loads((folder / "metrics.json").read_text())
    pruning = metrics["pruning"]
    assert pruning["ratio"] == 0.5 and pruning["criterion"] == "l1" and pruning["fine_tune_epochs"] == 0.5
    assert pruning["after"]["size_kb"] < pruning["before"]["size_kb"]
    assert pruning["after"]["params"] < pruning["before"]["params"]
    assert metrics["test_accuracy"] == pruning["after"]["test_accuracy"]
    assert metrics["format_checks"]["packed"]["agrees"] and metrics["format_checks"]["onnx"]["agrees"]
    assert json.loads((folder / "latency.json").read_text())["median_ms"] == pruning["after"]["latency_ms"]
    card = (folder / "README.md").read_text()
    assert "## Pruning" in card and "| test accuracy |" in card and "x faster" in card
    assert f"`{pruned.short()}`" in card and "energy, analytic (uJ)" in card and "fine-tuned for\n0.5 epochs" in card


def run_main(capsys, argv):
    with pytest.raises(SystemExit) as exited:
        sys.exit(main(argv))
    return exited.value.code, capsys.readouterr().err


@pytest.mark.parametrize("flags, fragment", [
    (["--prune", "0"], "--prune: the share of channels to remove must be in (0, 1) (got 0)"),
    (["--prune", "1"], "must be in (0, 1) (got 1)"),
    (["--prune", "-0.2"], "must be in (0, 1)"),
    (["--prune", "nan"], "must be in (0, 1) (got nan)"),
    (["--prune", "half"], "argument --prune: expected a number, got 'half'"),
    (["--prune-epochs", "2"], "give --prune too"),
    (["--prune-criterion", "l1"], "give --prune too"),
    (["--prune", "0.5", "--prune-epochs", "0"], "--prune-epochs: must be in (0, 1000]"),
    (["--prune", "0.5", "--prune-criterion", "random"], "invalid choice"),
])
def test_bad_pruning_flags_exit_2_with_one_line(tmp_path, capsys, flags, fragment):
    results = tmp_path / "results"
    code, err = run_main(capsys, ["export", "--study", "s", "--results", str(results), *flags])
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("bitnas: error: ") and fragment in err
    assert not results.exists()


def test_distill_is_accepted_with_prune_alone(tmp_path, capsys):
    # Past the flag checks, the study does not exist: that is the one line, not the --distill rule.
    code, err = run_main(capsys, ["export", "--study", "nosuch", "--results", str(tmp_path), "--prune", "0.25",
                                  "--distill"])
    assert code == 2 and "--distill" not in err and "nosuch" in err


def test_retraining_progress_reports_each_epoch_on_stderr_and_never_stops_training(capsys):
    from bitnas.export.exporter import _epoch_progress

    report = _epoch_progress("trial 3 retraining", 24)
    assert report(1, [0.61]) is False and report(2, [0.61, 0.7342]) is False
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("  trial 3 retraining: epoch 1/24, val accuracy 0.6100 (")
    assert lines[1].startswith("  trial 3 retraining: epoch 2/24, val accuracy 0.7342 (")
