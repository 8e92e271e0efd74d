"""Bad input: one line on stderr naming the problem, exit code 2, nothing created."""

import subprocess
import sys

import pytest

from bitnas.cli import main


def run_main(capsys, argv):
    with pytest.raises(SystemExit) as exited:
        sys.exit(main(argv))
    captured = capsys.readouterr()
    return exited.value.code, captured.err


@pytest.mark.parametrize("yaml_text, fragment", [
    ("trials: [1, 2\n", "malformed YAML"),
    ("colour: blue\n", "colour: unknown key"),
    ("trials: 0\n", "trials: Input should be greater than or equal to 1"),
    ("latency:\n  runs: 5\n", "latency.runs: Input should be greater than or equal to 30"),
])
def test_bad_config_exits_2_with_one_line_and_creates_nothing(tmp_path, capsys, yaml_text, fragment):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml_text)
    results = tmp_path / "results"
    code, err = run_main(capsys, ["search", "--config", str(config), "--results", str(results)])
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("bitnas: error: ") and fragment in err
    assert not results.exists()


@pytest.mark.parametrize("argv, fragment", [
    (["search", "--workers", "two"], "expected an integer"),
    (["search", "--epochs", "-1"], "training.epochs"),
    (["search", "--study", "../escape"], "study: must be"),
    (["search", "--frobnicate"], "unrecognized arguments"),
    (["launch"], "invalid choice"),
])
def test_bad_flags_exit_2_with_one_line(tmp_path, capsys, argv, fragment):
    code, err = run_main(capsys, argv + ["--results", str(tmp_path / "r")] if argv[0] == "search" and "--frobnicate" not in argv else argv)
    assert code == 2
    assert err.count("\n") == 1 and fragment in err
    assert not (tmp_path / "r").exists()


def test_export_of_unknown_study_names_it(tmp_path, capsys):
    code, err = run_main(capsys, ["export", "--study", "nosuch", "--results", str(tmp_path)])
    assert code == 2
    assert err == f"bitnas: error: unknown study 'nosuch': no studies under {tmp_path}/ (no optuna.journal); run `bitnas search` first\n"
    assert list(tmp_path.iterdir()) == []


def test_console_script_reports_bad_yaml_without_a_traceback(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("training: {epochs: [}\n")
    done = subprocess.run(["bitnas", "search", "--config", str(config), "--results", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("bitnas: error: ") and done.stderr.count("\n") == 1
    assert not (tmp_path / "r").exists()
