"""Reference networks: the ImageNet ones match the published cost figures, the small ones build.

Published figures: docs/references.md, "ImageNet reference costs":
Bi-Real-18 BOPs 1.68e9, OPs 1.63e8; ReActNet-A BOPs 4.82e9, OPs 0.87e8; XNOR-Net ResNet-18
BOPs 1.70e9, FLOPs 1.41e8, OPs 1.67e8. A correct counter lands within 3% of each.
"""

import contextlib
import functools
import io
import json

import pytest
import torch

from bitnas.cli import main
from bitnas.spaces import Genotype, build_model
from bitnas.spaces.baselines import BASELINES, SMALL_BASELINES, UnknownBaseline, baseline_genotype, small_baselines

PUBLISHED = {
    "birealnet18": {"bops": 1.68e9, "ops": 1.63e8},
    "reactnet_a": {"bops": 4.82e9, "ops": 0.87e8},
    "xnor_resnet18": {"bops": 1.70e9, "flops": 1.41e8, "ops": 1.67e8},
}


@functools.lru_cache(maxsize=None)
def cli_costs(name: str) -> dict:
    """`bitnas costs --baseline NAME --input-size 224 --classes 1000 --json`, parsed (counted once)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["costs", "--baseline", name, "--input-size", "224", "--classes", "1000", "--json"]) == 0
    return json.loads(out.getvalue())


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_imagenet_baselines_match_the_published_costs_through_the_cli(name):
    totals = cli_costs(name)
    for key, published in PUBLISHED[name].items():
        assert totals[key] == pytest.approx(published, rel=0.03), key
    assert {"params", "size_bits", "bops", "flops", "ops", "ace"} <= totals.keys()


def test_birealnet18_full_precision_parts_match_the_hand_count():
    # docs/references.md, "ImageNet reference costs": 7x7 stem 118.0e6 + three 1x1 downsample
    # convs 3 x 6.42e6 + FC 0.51e6 = 137.8e6
    totals = cli_costs("birealnet18")
    fp = [layer["macs"] for layer in totals["layers"] if layer["weight_bits"] == 32]
    assert fp[0] == 118_013_952 and fp[-1] == 512_000
    assert sorted(fp[1:-1]) == [6_422_528] * 3
    assert totals["bops"] == 1_676_279_808 and totals["flops"] == sum(fp)


@pytest.mark.parametrize("name", SMALL_BASELINES)
@pytest.mark.parametrize("geometry", [(28, 1, 10), (32, 3, 10)])
def test_small_baselines_build_run_and_round_trip(name, geometry):
    size, channels, classes = geometry
    genotype = baseline_genotype(name, input_size=size, in_channels=channels, num_classes=classes)
    assert Genotype.from_json(genotype.to_json()) == genotype
    torch.manual_seed(0)
    model = build_model(genotype)
    logits = model(torch.randn(2, channels, size, size))
    logits.logsumexp(1).sum().backward()
    assert logits.shape == (2, classes) and torch.isfinite(logits).all()


def test_small_baselines_cover_every_reference_design_and_differ():
    genotypes = small_baselines(input_size=28, in_channels=1, num_classes=10)
    assert set(genotypes) == {"xnor_small", "bireal_small", "reactnet_small", "meliusnet_small",
                              "binarydensenet_small", "mobilenetv2_small", "mobilenetv2_int8_small"}
    assert len({g.hash() for g in genotypes.values()}) == len(genotypes)
    assert all(BASELINES[name].summary for name in BASELINES)


def test_unknown_baseline_names_the_known_ones():
    with pytest.raises(UnknownBaseline, match=r"unknown baseline 'resnet50'; known: birealnet18, reactnet_a"):
        baseline_genotype("resnet50")
