"""Structured channel pruning (spaces/pruning.py): ratio 0 computes the original function exactly;
a pruned network is the narrower genotype's own build; it equals the original with the removed
channels masked where masking is equivalent (float blocks), and keeps the original's values on
the kept channels that no removed channel feeds (binary blocks); blocks it cannot prune are one
clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bitnas.spaces import Genotype, build_model
from bitnas.spaces.baselines import baseline_genotype
from bitnas.spaces.pruning import PruningError, check_prunable, kept_count, prune

PRUNABLE = ("float", "binary", "xnor", "quicknet", "reactnet", "dwsep")


def trained_looking(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random BN statistics, affine and thresholds, as training leaves them (fresh ones are all
    alike, which would hide a channel copied from the wrong place)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=generator) + 0.1)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
        for name, parameter in model.named_parameters():
            if "shift" in name or "threshold" in name or "prelu" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model.eval()


def network(block: str, widths=(8, 16, 24), strides=(1, 2, 1), depths=(2, 1, 1), stem=8, head=0, **options) -> Genotype:
    stages = [dict(block=block, width=w, depth=d, stride=s, **options) for w, s, d in zip(widths, strides, depths)]
    return Genotype.from_dict(dict(input_size=12, in_channels=1, num_classes=5, stem_width=stem, stages=stages,
                                   head_width=head))


def built(genotype: Genotype, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return trained_looking(build_model(genotype), seed)


CASES = [network(block) for block in PRUNABLE] + [
    network("xnor", downsample="binary"), network("reactnet", downsample="maxpool"),
    network("quicknet", downsample="fp"), network("xnor", weight_bits=2, activation_bits=4),
    network("dwsep", weight_bits=8, activation_bits=8), network("float", head=12),
    baseline_genotype("reactnet_small"), baseline_genotype("bireal_small"), baseline_genotype("xnor_small"),
]


@pytest.mark.parametrize("genotype", CASES, ids=lambda g: g.short())
def test_ratio_zero_computes_exactly_the_original_function(genotype):
    model = built(genotype)
    images = torch.randn(6, genotype.in_channels, genotype.input_size, genotype.input_size)
    result = prune(model, genotype, 0.0)
    assert result.genotype == genotype
    with torch.inference_mode():
        assert torch.equal(result.model(images), model(images))


@pytest.mark.parametrize("genotype", CASES, ids=lambda g: g.short())
@pytest.mark.parametrize("ratio", [0.25, 0.5])
def test_a_pruned_network_is_the_narrower_genotypes_build(genotype, ratio):
    model = built(genotype)
    result = prune(model, genotype, ratio)
    reference = build_model(result.genotype)
    assert {k: v.shape for k, v in result.model.state_dict().items()} == \
        {k: v.shape for k, v in reference.state_dict().items()}
    for old, new in zip(genotype.stages, result.genotype.stages):
        assert 1 <= new.width < old.width and new.model_copy(update={"width": old.width}) == old
    assert sum(p.numel() for p in result.model.parameters()) < sum(p.numel() for p in model.parameters())
    images = torch.randn(3, genotype.in_channels, genotype.input_size, genotype.input_size)
    assert torch.isfinite(result.model(images)).all()


def test_the_kept_count_removes_the_ratio_rounded_half_up():
    assert [kept_count(16, r) for r in (0.0, 0.25, 0.5, 0.9, 0.99)] == [16, 12, 8, 2, 1]
    assert kept_count(1, 0.5) == 1 and kept_count(3, 0.5) == 1


def test_widths_double_by_duplication_in_reactnet_so_the_stem_is_pruned_with_it():
    genotype = baseline_genotype("reactnet_small")  # stem 16 -> 32 -> 64 -> 128, each by duplicated 1x1s
    result = prune(built(genotype), genotype, 0.25)
    assert result.genotype.stem_width == 12 and [s.width for s in result.genotype.stages] == [24, 48, 96]
    stem = result.kept["stem"]
    # The duplicated copies keep the same channels as the input they duplicate.
    assert result.kept["stages.0"] == stem + [16 + i for i in stem]


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_float_network_equals_the_original_with_the_removed_channels_masked(ratio):
    # conv-BN-ReLU blocks: a removed channel that reads as zero downstream is exactly a missing one.
    genotype = network("float", head=12)
    model = built(genotype, seed=1)
    result = prune(model, genotype, ratio)

    def masking(name):
        removed = sorted(set(range(model.get_submodule(name).bn.num_features)) - set(result.kept[name]))

        def hook(module, inputs, output):
            output = output.clone()
            output[:, removed] = 0
            return output
        return hook

    handles = [model.get_submodule(f"stages.{i}").register_forward_hook(masking(f"stages.{i}"))
               for i in range(len(model.stages))]
    images = torch.randn(8, 1, 12, 12)
    with torch.inference_mode():
        masked = model(images)
        pruned = result.model(images)
    for handle in handles:
        handle.remove()
    torch.testing.assert_close(pruned, masked, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("block, layer", [("binary", "bn"), ("quicknet", "bn"), ("xnor", "bn2")])
def test_binary_blocks_keep_the_values_of_kept_channels_that_no_removed_channel_feeds(block, layer):
    # The first stage strides (a downsampling shortcut), so the stem is not pruned and the first
    # block's kept output channels read all the original inputs: their values must be the original's.
    genotype = network(block, widths=(16, 24), strides=(2, 2), depths=(1, 1))
    model = built(genotype, seed=2)
    result = prune(model, genotype, 0.5)
    assert result.genotype.stem_width == genotype.stem_width
    kept = result.kept["stages.0.conv1" if block == "xnor" else "stages.0"]
    captured = {}
    for name, net in (("old", model), ("new", result.model)):
        net.stages[0].get_submodule(layer).register_forward_hook(lambda m, i, o, name=name: captured.__setitem__(name, o))
    images = torch.randn(5, 1, 12, 12)
    with torch.inference_mode():
        model(images), result.model(images)
    assert torch.equal(captured["new"], captured["old"][:, kept])


def test_the_bn_criterion_keeps_the_channels_with_the_largest_gamma():
    genotype = network("float", widths=(8,), strides=(1,), depths=(1,))
    model = built(genotype)
    with torch.no_grad():
        model.stages[0].bn.weight.copy_(torch.tensor([0.1, 5, 0.2, 4, 0.3, 3, 0.4, 2.0]))
    assert prune(model, genotype, 0.5, criterion="bn").kept["stages.0"] == [1, 3, 5, 7]
    with torch.no_grad():
        model.stages[0].conv.weight.mul_(0.0).add_(torch.arange(8.0).view(8, 1, 1, 1))
    assert prune(model, genotype, 0.5, criterion="l1").kept["stages.0"] == [4, 5, 6, 7]


def test_a_stride_1_downsampling_shortcut_keeps_its_conv():
    # 16 -> 17 channels at stride 1 has a 1x1 shortcut conv; 90% pruning would make both 2 (an
    # identity), so the output keeps one channel more.
    genotype = network("binary", widths=(16, 17), strides=(2, 1), depths=(1, 1))
    result = prune(built(genotype), genotype, 0.9)
    assert [s.width for s in result.genotype.stages] == [2, 3]


@pytest.mark.parametrize("block", ["binary_dense", "melius", "shuffle", "mbconv"])
def test_blocks_without_channel_surgery_are_refused_in_one_line(block):
    options = {"groups": 2} if block == "shuffle" else {}
    genotype = network(block, widths=(8, 16), strides=(1, 2), depths=(1, 1), **options)
    with pytest.raises(PruningError, match=rf"block '{block}' \(stage 0\) cannot be pruned") as raised:
        check_prunable(genotype)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, float("nan")])
def test_a_ratio_outside_0_1_is_refused(ratio):
    genotype = network("float")
    with pytest.raises(PruningError, match="ratio must lie in"):
        prune(built(genotype), genotype, ratio)


@settings(max_examples=25, deadline=None)
@given(block=st.sampled_from(PRUNABLE), widths=st.lists(st.integers(1, 20), min_size=1, max_size=3),
       strides=st.lists(st.sampled_from([1, 2]), min_size=3, max_size=3), stem=st.integers(1, 12),
       ratio=st.floats(0.0, 0.95), seed=st.integers(0, 3))
# Found by hypothesis: a stem of 3 pruned to 1 leaves stage 0 no non-multiple width, and the stem
# kept leaves stage 1 none unless stage 0 keeps 2 (the search backtracks).
@example(block="reactnet", widths=[2, 1], strides=[1, 1, 1], stem=3, ratio=0.5, seed=0)
@example(block="binary", widths=[2, 1], strides=[1, 1, 1], stem=3, ratio=0.5, seed=0)
def test_any_prunable_network_prunes_to_its_narrower_build(block, widths, strides, stem, ratio, seed):
    genotype = network(block, widths=tuple(widths), strides=tuple(strides[:len(widths)]), depths=(2,) * len(widths),
                       stem=stem)
    model = built(genotype, seed)
    result = prune(model, genotype, ratio)
    assert set(result.model.state_dict()) == set(model.state_dict())
    images = torch.randn(2, 1, 12, 12)
    with torch.inference_mode():
        assert torch.isfinite(result.model(images)).all()
        if ratio == 0.0:
            assert torch.equal(result.model(images), model(images))


@pytest.mark.parametrize("flags, named", [(["--latency-runs", "10"], "--latency-runs"), (["--epochs", "0"], "--epochs"),
                                          (["--ratios", "0.25", "1.5"], "--ratios"), (["--prune-epochs", "0"], "--prune-epochs"),
                                          (["--threads", "0"], "--threads"), (["--batch-size", "0"], "--batch-size")])
def test_the_pruning_benchmark_refuses_a_bad_flag_in_one_line_before_training(flags, named, tmp_path):
    """Before, `--latency-runs 10` failed in a pydantic traceback; now each bad flag is one line
    naming it, and nothing is trained or written (the run is in an empty folder)."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "pruning.py"
    done = subprocess.run([sys.executable, str(script), *flags], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert named in done.stderr.strip().splitlines()[-1]
    assert not any(tmp_path.iterdir())
