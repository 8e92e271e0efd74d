"""`bitnas costs`: a genotype file or a baseline in, a summary or one JSON object out; bad input is
one line and exit 2."""

import json
import re

import pytest

from bitnas.cli import main
from bitnas.spaces.baselines import baseline_genotype


def test_costs_of_a_genotype_file_prints_summary_and_table(tmp_path, capsys):
    path = tmp_path / "g.json"
    path.write_text(baseline_genotype("bireal_small").to_json(indent=2))
    assert main(["costs", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("genotype  in28x1 | stem16 | binary_k3_s1_w16_d2")
    assert "BOPs" in out and "ACE" in out and "stages.0.conv" in out


def test_geometry_flags_override_the_file(tmp_path, capsys):
    path = tmp_path / "g.json"
    path.write_text(baseline_genotype("bireal_small").to_json())
    assert main(["costs", str(path), "--input-size", "32", "--in-channels", "3", "--classes", "100", "--json"]) == 0
    totals = json.loads(capsys.readouterr().out)
    assert totals["genotype"].startswith("in32x3") and totals["genotype"].endswith("fc100")


@pytest.mark.parametrize("argv, message", [
    (["costs"], "exactly one"),
    (["costs", "g.json", "--baseline", "bireal_small"], "exactly one"),
    (["costs", "--baseline", "vgg"], "unknown baseline 'vgg'"),
    (["costs", "absent.json"], "absent.json: cannot read genotype file"),
    (["costs", "bad.json"], "genotype: not valid JSON"),
    (["costs", "wrong.json"], r"genotype.stages.0.width: Input should be greater than or equal to 1"),
    (["costs", "--baseline", "bireal_small", "--input-size", "0"], "--input-size: must be >= 1"),
    (["costs", "--baseline", "bireal_small", "--classes", "x"], "expected an integer"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_text("{oops")
    wrong = baseline_genotype("bireal_small").to_dict()
    wrong["stages"][0]["width"] = 0
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own usage errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("bitnas: error: ")
    assert re.search(message, err)
