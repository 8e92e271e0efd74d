"""The engine compiles every reference network, whatever its head (a 1x1 head conv or none): the binary
ones with their binary layers packed (XNOR-popcount), the int8 one with its quantized layers native,
all agreeing with torch."""

import numpy as np
import pytest
import torch

from bitnas.evaluators.engine import compile_model
from bitnas.spaces import build_model
from bitnas.spaces.baselines import small_baselines

BASELINES = small_baselines(input_size=28, in_channels=1, num_classes=10)


@pytest.mark.parametrize("name", ["bireal_small", "reactnet_small"])
def test_binary_reference_networks_are_packed_and_agree_with_torch(name):
    torch.manual_seed(0)
    model = build_model(BASELINES[name]).eval()
    image = torch.randn(1, 1, 28, 28)
    engine = compile_model(model, (1, 28, 28))
    backends = [step["backend"] for step in engine.summary()]
    assert backends.count("engine") >= 3, backends  # the binary blocks run in the packed engine
    assert "torch-fallback" not in backends, backends
    with torch.inference_mode():
        expected = model(image).numpy()[0]
    got = np.asarray(engine(image))[0]
    assert got.shape == (10,)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["mobilenetv2_small", "mobilenetv2_int8_small"])
def test_compact_reference_networks_run_their_quantized_layers_natively(name):
    torch.manual_seed(0)
    model = build_model(BASELINES[name]).eval()
    engine = compile_model(model, (1, 28, 28))
    steps = engine.summary()
    assert engine.simulated == [] and engine.fallbacks == [], steps
    native = [s["step"] for s in steps if s["backend"] in ("engine", "engine+torch")]
    # the fp32 MobileNetV2 is genuine fp32 throughout (its stem conv and pooled classifier are
    # native fp32 glue); the int8 one runs every quantized conv natively as well
    if name == "mobilenetv2_small":
        assert native == ["stem", "head"], steps
    else:
        assert len(native) > 2 and all(s in native for s in ("stem.0", "head")), steps
    image = torch.randn(1, 1, 28, 28)
    with torch.inference_mode():
        expected = model(image).numpy()[0]
    got = np.asarray(engine(image))[0]
    assert got.shape == (10,)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_head_conv_is_part_of_the_compiled_network():
    genotype = BASELINES["mobilenetv2_small"]
    assert genotype.short().split(" | ")[-2].startswith("head")
    steps = [step["step"] for step in compile_model(build_model(genotype).eval(), (1, 28, 28)).summary()]
    assert steps[-1] == "head"


def _reactnet(stem: int, stages: list[tuple[int, int, int]]):
    """reactnet_small with another stem width and (stride, width, depth) per stage."""
    from bitnas.spaces.genotype import Genotype

    data = BASELINES["reactnet_small"].to_dict()
    data["stem_width"] = stem
    data["stages"] = [{**data["stages"][0], "stride": stride, "width": width, "depth": depth}
                      for stride, width, depth in stages]
    return Genotype.from_dict(data)


@pytest.mark.parametrize("genotype", [
    BASELINES["reactnet_small"],  # widths that double (two 1x1 copies), strided AvgPool shortcuts
    _reactnet(12, [(1, 24, 1), (2, 48, 2), (2, 96, 2)]),  # reactnet_small pruned by 25%
    _reactnet(16, [(1, 16, 2), (2, 32, 1), (1, 32, 1)]),  # one 1x1 copy, identity shortcuts
])
def test_a_reactnet_block_in_one_native_call_equals_its_steps_bit_for_bit(genotype):
    """On one thread each ReActNet block runs as one compiled call (fused.react_block) to save the
    per-call cost of its seven steps; its logits are exactly those of the steps, widths a pruning
    leaves (12, 24, ...) and blocks with one 1x1 copy included."""
    import numba

    from bitnas.evaluators.engine.ops import ReActStep

    torch.manual_seed(1)
    model = build_model(genotype).eval()
    image = np.random.default_rng(0).standard_normal((1, 28, 28)).astype(np.float32)
    fused = compile_model(model, (1, 28, 28))
    stepwise = compile_model(model, (1, 28, 28))
    blocks = [step for step in stepwise.steps if isinstance(step, ReActStep)]
    assert blocks
    assert all(block._fused is not None for block in blocks)
    for block in blocks:
        block._fused = None  # as a block the fused call cannot take
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        got, expected = fused.run_one(image), stepwise.run_one(image)
        assert all(step._fused is not None for step in fused.steps if isinstance(step, ReActStep))
    finally:
        numba.set_num_threads(previous)
    assert np.array_equal(got, expected)
    with torch.inference_mode():
        np.testing.assert_allclose(got, model(torch.from_numpy(image)[None]).numpy()[0], rtol=1e-4, atol=1e-5)
