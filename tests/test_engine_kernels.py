"""Engine v2 kernels: the register-blocked binary conv, its fused packed output, the ISA path.

Every layout the kernels use (4- and 2-pixel register blocks, border pixels, a partial last
block of output channels, several words per pixel) must give torch's +-1 convolution bit for bit;
hypothesis draws shapes that hit each of them. The AVX2 kernels (which use x86 table-lookup
intrinsics) are checked in a subprocess compiled for haswell, since numba compiles one target per
process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitnas.evaluators.engine import isa
from bitnas.evaluators.engine.kernels import (binary_conv2d, binary_conv2d_prepared, pack_activations,
                                              pack_weight_signs, packed_words, prepare_weights)


def sign(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, 1.0, -1.0)


def case(seed: int, cin: int, cout: int, kernel: int, stride: int, size: int, width: int | None = None):
    rng = np.random.default_rng(seed)
    width = size if width is None else width
    x = rng.standard_normal((size, width, cin)).astype(np.float32)
    shift = rng.normal(0, 0.5, cin).astype(np.float32)
    weight = rng.standard_normal((cout, cin, kernel, kernel)).astype(np.float32)
    x_t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
    expected = torch.nn.functional.conv2d(sign(x_t + torch.from_numpy(shift)[:, None, None]),
                                          sign(torch.from_numpy(weight)), stride=stride, padding=kernel // 2)[0]
    return x, shift, weight, expected.numpy().transpose(1, 2, 0)


def engine_counts(x, shift, weight, kernel, stride, threads=1):
    height, width, cin = x.shape
    cout = weight.shape[0]
    packed = np.empty((height, width, packed_words(cin)), np.uint64)
    out_size = lambda n: (n + 2 * (kernel // 2) - kernel) // stride + 1  # noqa: E731
    out = np.full((out_size(height), out_size(width), cout), np.nan, np.float32)
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        pack_activations(x, shift, packed)
        binary_conv2d(packed, pack_weight_signs(weight >= 0), kernel, stride, kernel // 2, cin, np.ones(cout),
                      np.zeros(cout), np.zeros((0, 0, 0), np.float32), False, out)
    finally:
        numba.set_num_threads(previous)
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cin=st.integers(1, 200), cout=st.integers(1, 40), kernel=st.sampled_from([1, 3, 5]),
       stride=st.sampled_from([1, 2]), size=st.integers(1, 13), width=st.integers(1, 13),
       threads=st.sampled_from([1, 2]), seed=st.integers(0, 2**16))
def test_register_blocked_conv_equals_torch_bit_for_bit(cin, cout, kernel, stride, size, width, threads, seed):
    x, shift, weight, expected = case(seed, cin, cout, kernel, stride, size, width)
    got = engine_counts(x, shift, weight, kernel, stride, threads)
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("cin,cout,size,stride", [(64, 64, 9, 1), (128, 33, 10, 1), (70, 16, 11, 2), (512, 32, 7, 1)])
def test_ResNet_like_shapes_equal_torch_bit_for_bit(cin, cout, size, stride):
    x, shift, weight, expected = case(cin + cout, cin, cout, 3, stride, size)
    assert np.array_equal(engine_counts(x, shift, weight, 3, stride), expected)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cin=st.integers(1, 150), cout=st.integers(1, 150), stride=st.sampled_from([1, 2]), size=st.integers(2, 11),
       residual=st.booleans(), seed=st.integers(0, 2**16))
def test_fused_packed_output_equals_packing_the_float_output(cin, cout, stride, size, residual, seed):
    """The conv's optional packed output is exactly pack_activations of its float output."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((size, size, cin)).astype(np.float32)
    shift = rng.normal(0, 0.3, cin).astype(np.float32)
    packed = np.empty((size, size, packed_words(cin)), np.uint64)
    pack_activations(x, shift, packed)
    prepared = prepare_weights(pack_weight_signs(rng.standard_normal((cout, cin, 3, 3)) >= 0))
    out_size = (size + 2 - 3) // stride + 1
    scale, bias = rng.uniform(0.01, 0.1, cout), rng.normal(0, 0.5, cout)
    shortcut = rng.standard_normal((out_size, out_size, cout)).astype(np.float32) if residual else \
        np.zeros((0, 0, 0), np.float32)
    next_shift = rng.normal(0, 0.3, cout).astype(np.float32)
    out = np.empty((out_size, out_size, cout), np.float32)
    fused = np.full((out_size, out_size, packed_words(cout)), 12345, np.uint64)  # stale words must be cleared
    binary_conv2d_prepared(packed, prepared, 3, stride, 1, cin, scale, bias, shortcut, residual, out,
                           next_shift=next_shift, packed_out=fused)
    plain = np.empty_like(out)
    binary_conv2d_prepared(packed, prepared, 3, stride, 1, cin, scale, bias, shortcut, residual, plain)
    assert np.array_equal(out, plain)
    repacked = np.empty_like(fused)
    pack_activations(out, next_shift, repacked)
    assert np.array_equal(fused, repacked)


def numpy_pack(x: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """An independent packer: bit b of word j of a pixel is (x + shift >= 0) of channel 64j + b."""
    height, width, channels = x.shape
    bits = np.zeros((height, width, packed_words(channels) * 64), np.uint64)
    bits[..., :channels] = (x + shift) >= np.float32(0)
    weights = np.uint64(1) << np.arange(64, dtype=np.uint64)
    return (bits.reshape(height, width, -1, 64) * weights).sum(axis=3, dtype=np.uint64)


def finish_reference(counts, scale, bias, residual):
    """The epilogue by its formula: float32(scale * dot + bias) in float64, then + residual in float32."""
    value = (scale * counts.astype(np.float64) + bias).astype(np.float32)
    return value if residual is None else value + residual


# Every lane count of a partial 16-output block (1-15), the full ones around them, and several words per pixel.
@pytest.mark.parametrize("cout", [1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 18, 23, 24, 36, 40])
@pytest.mark.parametrize("cin", [12, 36, 70])
def test_each_output_width_finishes_and_packs_like_the_formula(cout, cin):
    """A width pruning leaves (12, 18, 36, ...) ends in a vector two pixels share (<= 4 outputs
    left: 1-4, 9-12, 17, 18, 36) or a lane-masked store (5-7, 13-15, 23): scale, BatchNorm bias,
    residual and the fused packed output equal the formula and an independent packer, bit for bit,
    and no output past Cout is written (the buffer's canary column survives)."""
    rng = np.random.default_rng(cout * 100 + cin)
    x, shift, weight, dot = case(cout + cin, cin, cout, 3, 1, 6)
    packed = np.empty((6, 6, packed_words(cin)), np.uint64)
    pack_activations(x, shift, packed)
    assert np.array_equal(packed, numpy_pack(x, shift))
    scale, bias = rng.uniform(0.01, 0.1, cout), rng.normal(0, 0.5, cout)
    residual = rng.standard_normal((6, 6, cout)).astype(np.float32)
    next_shift = rng.normal(0, 0.3, cout).astype(np.float32)
    canvas = np.full(6 * 6 * cout + 16, 7.0, np.float32)  # 16 canaries after the output
    out = canvas[:6 * 6 * cout].reshape(6, 6, cout)
    fused = np.empty((6, 6, packed_words(cout)), np.uint64)
    binary_conv2d_prepared(packed, prepare_weights(pack_weight_signs(weight >= 0)), 3, 1, 1, cin, scale, bias,
                           residual, True, out, next_shift=next_shift, packed_out=fused)
    expected = finish_reference(dot, scale, bias, residual)
    assert np.array_equal(out, expected)
    assert np.all(canvas[6 * 6 * cout:] == 7.0)
    assert np.array_equal(fused, numpy_pack(expected, next_shift))
    plain = np.empty_like(out)
    binary_conv2d_prepared(packed, prepare_weights(pack_weight_signs(weight >= 0)), 3, 1, 1, cin, scale, bias,
                           np.zeros((0, 0, 0), np.float32), False, plain)
    assert np.array_equal(plain, finish_reference(dot, scale, bias, None))


def test_isa_path_names_what_numba_compiles_for(monkeypatch):
    path = isa.isa_path()
    assert path in ("avx512-vpopcntdq", "avx2", "generic")
    flags = isa.cpu_flags()
    if numba.config.CPU_NAME is None and not os.environ.get("NUMBA_CPU_FEATURES"):
        assert (path == "avx512-vpopcntdq") == ("avx512_vpopcntdq" in flags)
    assert isa.describe()["isa_path"] == path
    assert isa._from_features("+avx2,+fma") == "avx2"
    assert isa._from_features("+avx2,+avx512f,+avx512vpopcntdq") == "avx512-vpopcntdq"
    assert isa._from_features("-avx2") == "generic"
    assert isa._from_features("") is None


AVX2_CHECK = """
import numpy as np, sys
sys.path.insert(0, {tests!r})
from bitnas.evaluators.engine import isa
from test_engine_kernels import case, engine_counts, test_each_output_width_finishes_and_packs_like_the_formula
assert isa.isa_path() == "avx2", isa.isa_path()
for cout in (3, 12, 18, 36):
    for cin in (12, 70):
        test_each_output_width_finishes_and_packs_like_the_formula(cout, cin)
for seed, (cin, cout, kernel, stride, size, width) in enumerate([(64, 64, 3, 1, 9, 9), (3, 5, 3, 2, 7, 6),
        (200, 17, 5, 1, 6, 8), (130, 40, 3, 2, 9, 9), (512, 16, 3, 1, 5, 5), (700, 16, 3, 1, 6, 6), (1, 1, 1, 1, 1, 1),
        (200, 12, 5, 1, 7, 9), (300, 20, 3, 1, 6, 7)]):  # split tails past 31 words (the byte sums' flush)
    x, shift, weight, expected = case(seed, cin, cout, kernel, stride, size, width)
    for threads in (1, 2):
        assert np.array_equal(engine_counts(x, shift, weight, kernel, stride, threads), expected), (cin, cout)
print("ok")
"""


@pytest.mark.skipif("avx2" not in isa.cpu_flags(), reason="needs an AVX2 CPU")
def test_avx2_kernels_equal_torch_bit_for_bit_in_a_haswell_subprocess():
    environment = {**os.environ, "NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": ""}
    result = subprocess.run([sys.executable, "-c", AVX2_CHECK.format(tests=str(Path(__file__).parent))],
                            env=environment, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_convs_written_into_slices_of_one_output_equal_their_concatenation():
    """ReActNet's 1x1 copies write straight into their channels of the block's output: the same
    numbers as computing each alone and concatenating, widths that end in a partial block included;
    a slice that does not fit is refused."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 5, 18)).astype(np.float32)
    packed = np.empty((5, 5, 1), np.uint64)
    pack_activations(x, np.zeros(18, np.float32), packed)
    residual = rng.standard_normal((5, 5, 18)).astype(np.float32)
    convs = [(prepare_weights(pack_weight_signs(rng.standard_normal((18, 18, 1, 1)) >= 0)),
              rng.uniform(0.01, 0.1, 18), rng.normal(0, 0.5, 18)) for _ in range(2)]
    alone = []
    for prepared, scale, bias in convs:
        out = np.empty((5, 5, 18), np.float32)
        binary_conv2d_prepared(packed, prepared, 1, 1, 0, 18, scale, bias, residual, True, out)
        alone.append(out)
    together = np.full((5, 5, 36), np.nan, np.float32)
    for index, (prepared, scale, bias) in enumerate(convs):
        binary_conv2d_prepared(packed, prepared, 1, 1, 0, 18, scale, bias, residual, True, together, out_first=18 * index)
    assert np.array_equal(together, np.concatenate(alone, axis=2))
    with pytest.raises(ValueError, match="do not fit"):
        binary_conv2d_prepared(packed, convs[0][0], 1, 1, 0, 18, convs[0][1], convs[0][2], residual, True, together,
                               out_first=19)
