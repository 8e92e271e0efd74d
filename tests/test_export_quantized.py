"""Export never fails on a correct network and never stops half-way: a real search whose every
network has 2-, 4- and 8-bit LSQ layers, its whole front exported, each format checked against
torch the way its arithmetic allows (export/agreement.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bitnas.export import export_study
from bitnas.export.agreement import compare_logits
from bitnas.spaces import Genotype
from conftest import search_in_process

# Every stage quantized at 2, 4 or 8 bits (LSQ activations, uniform weights), stem and head at 8 bits.
LSQ_SPACE = {"blocks": ["reactnet", "dwsep"], "kernels": [3], "stem_widths": [8], "stem_bits": [8], "head_bits": [8],
             "weight_bits": [2, 4, 8], "activation_bits": [2, 4, 8],
             "stages": [{"stride": 1, "widths": [8, 16], "depths": [1]}, {"stride": 2, "widths": [16], "depths": [1]}]}


@pytest.fixture(scope="module")
def lsq_study(tmp_path_factory, local_ray):
    folder = tmp_path_factory.mktemp("lsq")
    results = folder / "results"
    data = {"dataset": "digits", "workers": 2, "references": [], "seed": 5, "training": {"epochs": 0.5},
            "space": LSQ_SPACE}
    outcome, lines = search_in_process(data, results, "lsq", 4, folder=folder)
    assert outcome.completed == 4, "\n".join(lines)
    return results, outcome


def test_a_front_with_2_4_and_8_bit_lsq_layers_exports_whole(lsq_study):
    results, outcome = lsq_study
    front = sorted(int(n) for n in outcome.frame.loc[outcome.frame["pareto"], "trial"])
    written = export_study(results, "lsq")
    assert sorted(int(p.name.split("-")[1]) for p in written) == front
    bits_seen = set()
    for folder in written:
        genotype = Genotype.from_json((folder / "genotype.json").read_text())
        bits_seen |= {b for stage in genotype.stages for b in (stage.weight_bits, stage.activation_bits)}
        metrics = json.loads((folder / "metrics.json").read_text())
        for name in ("onnx", "packed"):
            check = metrics["format_checks"][name]
            assert check["agrees"] and check["decisive_flips"] == 0 and check["typical_abs_diff"] <= check["tolerance"]
        card = (folder / "README.md").read_text()
        assert "Checked in onnxruntime against torch: same class on" in card
        assert {p.name for p in folder.iterdir()} >= {"model.onnx", "model.bitnas.npz", "weights.safetensors",
                                                       "metrics.json", "README.md", "pareto.png"}
    assert bits_seen <= {2, 4, 8} and len(bits_seen) >= 2
    # Nothing half-written is left beside the exports.
    assert not [p for p in (results / "export" / "lsq").iterdir() if p.name.startswith(".")]


def test_the_export_rebuilds_the_request_its_trials_were_evaluated_with(lsq_study):
    from bitnas.search.studies import StudyArchive

    results, _ = lsq_study
    archive = StudyArchive(results, "lsq")
    trials = archive.completed()
    assert trials
    for trial in trials:
        recorded = trial.user_attrs["request_fingerprint"]
        assert archive.request(trial.number).fingerprint() == recorded
        # ... and it is specific: another trial's seed gives another request.
        assert archive.request(trial.number + 1000).fingerprint() != recorded


def test_logits_are_compared_as_the_arithmetic_allows():
    rng = np.random.default_rng(0)
    expected = rng.normal(0, 5, size=(64, 10))
    # Float rounding: agrees exactly where a float network must.
    assert compare_logits(expected, expected + 1e-6, quantized=False).agrees
    assert not compare_logits(expected, expected + 0.1, quantized=False).agrees
    # A rounding-boundary step in a quantized network: within its tolerance, and a near-tie may flip.
    tie = expected.copy()
    tie[0] = -10.0
    tie[0, :2] = [3.0, 3.001]
    shifted = tie.copy()
    shifted[0, 0] += 0.01
    check = compare_logits(tie, shifted, quantized=True)
    assert check.agrees and check.near_tie_flips == 1 and check.same_class == 63
    # A clear margin that changes class is a real disagreement, whatever the tolerance.
    wrong = expected.copy()
    wrong[5] = wrong[5][::-1]
    assert not compare_logits(expected, wrong, quantized=True).agrees
    # One image a boundary step away (same class) passes; a kernel off on every image does not.
    one_step = expected.copy()
    one_step[7] += 0.3 * np.eye(10)[expected[7].argmax()]  # the winning logit only: its class stays
    assert compare_logits(expected, one_step, quantized=True).agrees
    assert not compare_logits(expected, expected + 0.3, quantized=True).agrees
