"""The native quantized convs/linears compute torch's quantized function.

- the quantization of activations is torch's quantizer output bit for bit (LSQ ties included);
- every integer accumulation (each input plane x weight plane pair) equals, bit for bit, the
  integer conv of planes derived independently from torch's quantized operands (conv2d in
  float64, exact for these magnitudes), over shapes, odd channels, strides, kernels 1..7, groups
  (grouped 1x1, depthwise) and every W{1,2,4,8} x A{1,2,4,8} mix with every quantizer class;
- the float output is torch's module output within float32 rounding (relative to its largest
  magnitude), fused epilogue (folded BatchNorm, residual, ReLU/ReLU6) included.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from bitnas.evaluators.engine.compiler import NotCompilable, compile_module
from bitnas.evaluators.engine.native_blocks import simulated_layers
from bitnas.evaluators.engine.quantized import NativeQuantConv, NativeQuantLinear, fold_batchnorm
from bitnas.spaces import quantizers as q
from bitnas.spaces.layers import QuantConv2d, QuantLinear

ACTIVATIONS = ["sign_ste", "approx_sign", "rsign", "two_bit", "lsq4", "lsq8"]
WEIGHTS = ["sign_weights", "scaled_sign", "two_bit_weights", "uniform4_weights", "uniform8_weights"]


def activation(kind: str, channels: int, generator: torch.Generator) -> nn.Module:
    if kind == "rsign":
        module = q.RSign(channels)
        with torch.no_grad():
            module.threshold.copy_(0.4 * torch.randn(module.threshold.shape, generator=generator))
        return module
    module = q.QUANTIZERS[kind]()
    with torch.no_grad():
        if kind == "two_bit":
            module.inner.fill_(float(torch.empty(()).uniform_(0.1, 0.9, generator=generator)))
        if kind.startswith("lsq"):
            module.step.fill_(float(torch.empty(()).uniform_(0.02, 0.6, generator=generator)))
    return module


def weight_quantizer(kind: str, generator: torch.Generator) -> nn.Module:
    module = q.QUANTIZERS[kind]()
    if kind == "two_bit_weights":
        with torch.no_grad():
            module.inner.fill_(float(torch.empty(()).uniform_(0.1, 0.9, generator=generator)))
    return module


def to_hwc(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x[0].permute(1, 2, 0).numpy())


def input_planes_from_torch(conv: QuantConv2d, x: torch.Tensor) -> list[torch.Tensor]:
    """The integer planes of torch's quantized input, derived from its values alone."""
    xq = conv.input_quantizer(x).detach().double()
    quantizer = conv.input_quantizer
    if quantizer.bits == 1:
        return [xq]
    if isinstance(quantizer, q.TwoBitSymmetric):
        s = torch.where(xq >= 0, 1.0, -1.0).double()
        return [s, torch.where(xq.abs() == 1, s, -s)]  # outer levels are exactly +-1
    step = quantizer.step.detach().abs().clamp_min(1e-6).double()
    return [torch.round(xq / step)]


def weight_planes_from_torch(conv: QuantConv2d) -> list[torch.Tensor]:
    """The integer planes of torch's quantized weight, derived from its values alone."""
    wq = conv.kernel_quantizer(conv.weight).detach().double()
    quantizer = conv.kernel_quantizer
    sign = torch.where(wq >= 0, 1.0, -1.0).double()
    if quantizer.bits == 1:
        return [sign]
    peak = wq.abs().amax(dim=(1, 2, 3), keepdim=True)
    if isinstance(quantizer, q.TwoBitWeights):
        return [sign, torch.where(wq.abs() == peak, sign, -sign)]  # outer levels are the peak
    return [torch.round(wq / (peak / quantizer.qp)).nan_to_num(0.0)]


def build_conv(cin, cout, kernel, stride, groups, act, wq, seed, bias=False) -> QuantConv2d:
    generator = torch.Generator().manual_seed(seed)
    conv = QuantConv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=bias,
                       input_quantizer=activation(act, cin, generator), kernel_quantizer=weight_quantizer(wq, generator))
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator))
        if bias:
            conv.bias.copy_(torch.randn(cout, generator=generator))
    return conv.eval()


def assert_close_to(got: np.ndarray, expected: np.ndarray, rtol: float = 1e-5) -> None:
    scale = max(float(np.abs(expected).max()), 1e-6)
    np.testing.assert_allclose(got, expected, rtol=0, atol=rtol * scale)


def check_conv(conv: QuantConv2d, size: tuple[int, int], seed: int) -> NativeQuantConv:
    x = torch.randn(1, conv.in_channels, *size, generator=torch.Generator().manual_seed(seed + 1)) * 1.5
    native = NativeQuantConv.from_module(conv)
    x_hwc = to_hwc(x)
    with torch.no_grad():
        # the quantized input, bit for bit
        assert np.array_equal(native.quantize_input(x_hwc), to_hwc(conv.input_quantizer(x)))
        # every integer accumulation, bit for bit
        terms = native.integer_terms(x_hwc)
        for i, plane_x in enumerate(input_planes_from_torch(conv, x.double())):
            for j, plane_w in enumerate(weight_planes_from_torch(conv)):
                expected = nn.functional.conv2d(plane_x, plane_w, stride=conv.stride, padding=conv.padding,
                                                groups=conv.groups)[0].permute(1, 2, 0).numpy()
                assert np.array_equal(terms[i, j], expected.astype(np.int64)), (i, j)
        # the float output: torch's float32 conv rounds, so compare within a bound on that rounding
        # (relative to the largest sum of |x|*|w|, which cancellation can make much larger than the
        # output), and much tighter with the same function in float64
        xq, wq = conv.input_quantizer(x).double(), conv.kernel_quantizer(conv.weight).double()
        options = dict(stride=conv.stride, padding=conv.padding, groups=conv.groups)
        magnitude = float(nn.functional.conv2d(xq.abs(), wq.abs(), **options).max()) + 1e-30
        exact = to_hwc(nn.functional.conv2d(xq, wq, **options))
        got = native(x_hwc)
        np.testing.assert_allclose(got, to_hwc(conv(x)), rtol=0, atol=1e-5 * magnitude)
        np.testing.assert_allclose(got, exact, rtol=2e-7, atol=1e-6 * magnitude)
    return native


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(act=st.sampled_from(ACTIVATIONS), wq=st.sampled_from(WEIGHTS), group_in=st.integers(1, 9),
       group_out=st.integers(1, 9), groups=st.sampled_from([1, 1, 1, 2, 3]), kernel=st.sampled_from([1, 3, 5, 7]),
       stride=st.sampled_from([1, 2]), height=st.integers(1, 11), width=st.integers(1, 11), seed=st.integers(0, 2**16))
def test_integer_accumulations_and_output_equal_torch(act, wq, group_in, group_out, groups, kernel, stride, height,
                                                      width, seed):
    cin, cout = group_in * groups, group_out * groups
    check_conv(build_conv(cin, cout, kernel, stride, groups, act, wq, seed), (height, width), seed)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(act=st.sampled_from(ACTIVATIONS), wq=st.sampled_from(WEIGHTS), channels=st.integers(1, 70),
       kernel=st.sampled_from([3, 5]), stride=st.sampled_from([1, 2]), size=st.integers(2, 10), seed=st.integers(0, 2**16))
def test_depthwise_equals_torch(act, wq, channels, kernel, stride, size, seed):
    native = check_conv(build_conv(channels, channels, kernel, stride, channels, act, wq, seed), (size, size), seed)
    assert native.path == ("direct" if channels > 1 else native.path)


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("wq", WEIGHTS)
def test_every_bit_mix_on_multi_word_channels(act, wq):
    """Channel counts across 64-bit word boundaries and wide enough for the 4-row popcount loop."""
    native = check_conv(build_conv(130, 67, 3, 1, 1, act, wq, seed=len(act) * 7 + len(wq)), (6, 9), seed=3)
    binary = q.QUANTIZERS[act]().bits <= 2 if act != "rsign" else True
    expected = "popcount" if binary and q.QUANTIZERS[wq]().bits <= 2 else "int8-gemm"
    assert native.path == expected


@pytest.mark.parametrize("act,wq,cin,size", [("lsq8", "uniform8_weights", 1, 28), ("lsq8", "uniform8_weights", 3, 32),
                                             ("lsq4", "uniform4_weights", 3, 9)])
def test_8bit_stem_with_small_k(act, wq, cin, size):
    check_conv(build_conv(cin, 16, 3, 1, 1, act, wq, seed=cin), (size, size), seed=cin)


def test_lsq_ties_and_clamps_round_like_torch():
    conv = build_conv(4, 4, 1, 1, 1, "lsq4", "uniform4_weights", seed=0)
    with torch.no_grad():
        conv.input_quantizer.step.fill_(0.25)
    steps = torch.arange(-12, 12, dtype=torch.float32) * 0.125  # every half step: the ties
    x = torch.cat([steps, torch.tensor([0.0, -0.0, 100.0, -100.0, 1.875, -2.0, -2.125, 1.75])])
    x = x[: x.numel() // 4 * 4].reshape(1, 4, 1, -1)
    native = NativeQuantConv.from_module(conv)
    with torch.no_grad():
        assert np.array_equal(native.quantize_input(to_hwc(x)), to_hwc(conv.input_quantizer(x)))


def test_two_bit_boundaries_like_torch():
    conv = build_conv(3, 2, 1, 1, 1, "two_bit", "two_bit_weights", seed=0)
    level = float(conv.input_quantizer.level().detach())
    edge = (1 + torch.tensor(level)) / 2
    x = torch.tensor([0.0, -0.0, float(edge), -float(edge), float(torch.nextafter(edge, torch.tensor(0.0))), 1.0, -1.0,
                      5.0, -5.0]).reshape(1, 3, 1, 3)
    native = NativeQuantConv.from_module(conv)
    with torch.no_grad():
        assert np.array_equal(native.quantize_input(to_hwc(x)), to_hwc(conv.input_quantizer(x)))


@pytest.mark.parametrize("act,wq", [("two_bit", "two_bit_weights"), ("lsq4", "uniform4_weights"),
                                    ("rsign", "scaled_sign"), ("lsq8", "two_bit_weights")])
@pytest.mark.parametrize("clamp", [None, "relu", "relu6"])
@pytest.mark.parametrize("groups", [1, 6])
def test_fused_epilogue_equals_torch(act, wq, clamp, groups):
    conv = build_conv(12, 12, 3, 1, groups, act, wq, seed=5, bias=True)
    bn = nn.BatchNorm2d(12)
    generator = torch.Generator().manual_seed(9)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(12, generator=generator))
        bn.running_var.copy_(torch.rand(12, generator=generator) + 0.5)
        bn.weight.copy_(torch.randn(12, generator=generator) * 3)
        bn.bias.copy_(torch.randn(12, generator=generator))
    bn.eval()
    x = torch.randn(1, 12, 7, 8, generator=generator)
    residual = torch.randn(1, 12, 7, 8, generator=generator)
    native = NativeQuantConv.from_module(conv, batchnorm=bn, clamp=clamp)
    with torch.no_grad():
        y = bn(conv(x)) + residual
        expected = {None: y, "relu": torch.relu(y), "relu6": nn.functional.relu6(y)}[clamp]
    assert_close_to(native(to_hwc(x), residual=to_hwc(residual)), to_hwc(expected))
    gain, shift = fold_batchnorm(bn)
    again = NativeQuantConv.from_module(conv, gain=gain, shift=shift, clamp=clamp)
    assert np.array_equal(again(to_hwc(x), residual=to_hwc(residual)), native(to_hwc(x), residual=to_hwc(residual)))


@pytest.mark.parametrize("act,wq", [("lsq8", "uniform8_weights"), ("lsq4", "two_bit_weights"),
                                    ("two_bit", "scaled_sign"), ("sign_ste", "sign_weights")])
@pytest.mark.parametrize("features,classes,bias", [(512, 10, True), (37, 3, False), (1, 5, True)])
def test_quantized_linear_equals_torch(act, wq, features, classes, bias):
    generator = torch.Generator().manual_seed(features)
    linear = QuantLinear(features, classes, bias=bias, input_quantizer=activation(act, features, generator),
                         kernel_quantizer=weight_quantizer(wq, generator)).eval()
    x = torch.randn(features, generator=generator)
    native = NativeQuantLinear.from_module(linear)
    with torch.no_grad():
        expected = linear(x[None])[0].numpy()
    assert_close_to(native(x.numpy()), expected)


def test_all_zero_weight_channel():
    """UniformWeights' clamp_min(1e-8) step: an all-zero channel quantizes to 0 and outputs the BN shift."""
    conv = build_conv(5, 3, 3, 1, 1, "lsq8", "uniform8_weights", seed=1)
    with torch.no_grad():
        conv.weight[1].zero_()
    check_conv(conv, (5, 5), seed=1)


def test_what_is_not_native_says_why():
    fp = QuantConv2d(4, 4, 3, padding=1, input_quantizer=q.LsqActivations(8))  # 32-bit weights
    with pytest.raises(NotCompilable, match="full precision"):
        NativeQuantConv.from_module(fp)
    dilated = QuantConv2d(4, 4, 3, padding=2, dilation=2, input_quantizer=q.SignSTE(), kernel_quantizer=q.SignWeights())
    with pytest.raises(NotCompilable, match="undilated"):
        NativeQuantConv.from_module(dilated)
    with pytest.raises(NotCompilable, match="QuantConv2d"):
        NativeQuantConv.from_module(nn.Conv2d(4, 4, 3))


def test_grouped_conv_past_the_float32_exact_bound_uses_int32():
    """k*k*Cin/groups * 128 * 127 >= 2^24: the direct kernel accumulates in int32 instead."""
    conv = build_conv(240, 4, 3, 1, 2, "lsq8", "uniform8_weights", seed=4)
    native = check_conv(conv, (3, 4), seed=4)
    assert native.path == "direct" and not native.float_exact


@pytest.mark.parametrize("bits", [2, 3, 5])
def test_other_lsq_and_uniform_widths(bits):
    generator = torch.Generator().manual_seed(bits)
    conv = QuantConv2d(9, 5, 3, padding=1, bias=False, input_quantizer=q.LsqActivations(bits),
                       kernel_quantizer=q.UniformWeights(bits))
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator))
    check_conv(conv.eval(), (6, 5), seed=bits)


def test_rsign_with_one_shared_threshold():
    conv = QuantConv2d(7, 5, 3, padding=1, bias=False, input_quantizer=q.RSign(1), kernel_quantizer=q.TwoBitWeights())
    with torch.no_grad():
        conv.input_quantizer.threshold.fill_(0.3)
    check_conv(conv.eval(), (5, 6), seed=11)


def test_strided_input_is_accepted_and_other_dtypes_are_refused():
    conv = build_conv(6, 4, 3, 1, 1, "lsq4", "uniform4_weights", seed=2)
    native = NativeQuantConv.from_module(conv)
    x = np.random.default_rng(0).standard_normal((6, 5, 7)).astype(np.float32)  # (C, H, W)
    strided = x.transpose(1, 2, 0)  # an (H, W, C) view, not contiguous
    assert np.array_equal(native(strided), native(np.ascontiguousarray(strided)))
    with pytest.raises(ValueError, match="float32"):
        native(strided.astype(np.float64))


@pytest.mark.parametrize("act,kernel,packed", [("two_bit", 3, True), ("lsq8", 3, True), ("lsq8", 5, False),
                                               ("sign_ste", 7, True)])
def test_depthwise_two_bit_weight_planes_packed_into_one(act, kernel, packed):
    """S + B*T in one accumulation where the sum stays below 2^24; both halves still exact."""
    native = check_conv(build_conv(33, 33, kernel, 1, 33, act, "two_bit_weights", seed=kernel), (9, 8), seed=kernel)
    assert (native.packed_base > 0) == packed


@pytest.mark.parametrize("bits,expansion,stride,cin,cout", [
    (8, 6, 1, 16, 16), (8, 1, 1, 16, 16), (4, 2, 2, 16, 24), (2, 4, 1, 16, 24), (8, 6, 1, 24, 24)])
def test_an_mbconv_block_runs_as_one_native_chain_equal_to_torch(bits, expansion, stride, cin, cout):
    from bitnas.evaluators.engine.native_blocks import NativeChainStep
    from bitnas.spaces.blocks import InvertedResidualBlock

    from test_engine import randomise_trained_state

    torch.manual_seed(cin + cout + expansion)
    block = randomise_trained_state(InvertedResidualBlock(cin, cout, stride, 3, expansion=expansion, weight_bits=bits,
                                                          activation_bits=bits), 3)
    [step] = compile_module(block, "stages.0")
    assert isinstance(step, NativeChainStep) and step.residual == (stride == 1 and cin == cout)
    assert len(step.convs) == (2 if expansion == 1 else 3)
    x = torch.randn(1, cin, 9, 9, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = block(x)[0].permute(1, 2, 0).numpy()
    got = step(np.ascontiguousarray(x[0].permute(1, 2, 0).numpy()))
    assert np.allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_an_mbconv_block_with_squeeze_excitation_keeps_its_glue_in_torch():
    from bitnas.spaces.blocks import InvertedResidualBlock

    [step] = compile_module(InvertedResidualBlock(8, 8, 1, 3, expansion=2, se=True, weight_bits=8, activation_bits=8),
                            "stages.0")
    assert step.backend == "engine+torch" and simulated_layers([step]) == []


@pytest.mark.parametrize("kind", ["int8", "float"])
@pytest.mark.parametrize("act,wq,cin,kernel,expected_float", [
    ("lsq8", "uniform8_weights", 16, 1, torch.float32),     # 16 * 128 * 127 < 2^24: float32 is exact
    ("lsq8", "uniform8_weights", 130, 3, torch.float64),    # 1170 * 128 * 127 >= 2^24: float64
    ("lsq4", "sign_weights", 33, 3, torch.float32),
    ("two_bit", "uniform8_weights", 70, 3, torch.float32),  # two +-1 input planes against 8-bit weights
])
def test_both_int8_gemm_kinds_give_the_same_exact_integers(kind, act, wq, cin, kernel, expected_float, monkeypatch):
    """torch._int_mm (VNNI machines) and the float GEMM (the others) on the same integer planes:
    every accumulation bit for bit and torch's output, whichever this machine would pick."""
    monkeypatch.setenv("BITNAS_INT8_GEMM", kind)
    native = check_conv(build_conv(cin, 24, kernel, 1, 1, act, wq, seed=cin), (5, 7), seed=cin)
    assert native.path == "int8-gemm" and native.int8_gemm == kind
    assert native.weights.dtype == torch.int8  # what a packed file stores, whichever GEMM runs
    assert native.gemm_matrix().dtype == (torch.int8 if kind == "int8" else expected_float)


def test_the_float_gemm_follows_weights_replaced_after_the_layer_was_built(monkeypatch):
    """A packed file's weights are set on a layer built from the genotype: the float matrix is made
    again from them, and the exactness bound is taken on them, not on the ones it was built with."""
    monkeypatch.setenv("BITNAS_INT8_GEMM", "float")
    native = NativeQuantConv.from_module(build_conv(16, 8, 1, 1, 1, "lsq8", "uniform8_weights", seed=1))
    x = to_hwc(torch.randn(1, 16, 4, 4, generator=torch.Generator().manual_seed(2)))
    before = native.pairs(x)
    native.weights = -native.weights
    assert np.array_equal(native.pairs(x), -before)


def test_the_cpu_picks_the_int8_gemm_and_a_bad_setting_is_one_line(monkeypatch):
    from bitnas.errors import UserError
    from bitnas.evaluators.engine import isa

    monkeypatch.delenv("BITNAS_INT8_GEMM", raising=False)

    def on(path, flags):  # the CPU's answer is cached per process: asked again for each CPU here
        monkeypatch.setattr(isa, "isa_path", lambda: path)
        monkeypatch.setattr(isa, "cpu_flags", lambda: flags)
        isa._int8_gemm_from_cpu.cache_clear()

    try:
        on("avx512-vpopcntdq", {"avx2", "avx512f", "avx512_vpopcntdq", "avx512_vnni"})
        assert isa.int8_gemm_kind() == "int8"
        on("avx512-vpopcntdq", {"avx2", "avx512f", "avx512_vpopcntdq"})
        assert isa.int8_gemm_kind() == "float"  # no VNNI: torch._int_mm is many times slower than a float GEMM
        on("avx2", {"avx2", "avx512f", "avx512_vpopcntdq", "avx512_vnni"})
        assert isa.int8_gemm_kind() == "float"  # kernels compiled for an older CPU stand for one without VNNI
    finally:
        monkeypatch.undo()
        isa._int8_gemm_from_cpu.cache_clear()  # this machine's own answer again for the tests after
    monkeypatch.setenv("BITNAS_INT8_GEMM", "int8")
    assert isa.int8_gemm_kind() == "int8"
    monkeypatch.setenv("BITNAS_INT8_GEMM", "fast")
    with pytest.raises(UserError, match="BITNAS_INT8_GEMM: one of int8, float"):
        isa.int8_gemm_kind()
