"""The native kernels of the packed binary engine, compiled by numba to this CPU.

Layouts (batch 1, channel-last, so one pixel's channels are contiguous):
- float activations: (H, W, C) float32;
- packed activations: (H, W, Cw) uint64, Cw = ceil(C / 64); bit b of word j is channel 64*j + b,
  1 meaning +1 and 0 meaning -1; the unused high bits of the last word are 0;
- packed weights: (k*k, Cw, Cout) uint64, same bit convention, unused bits 0.

The product of two +-1 values is +1 when their bits agree, so over n real channels
    dot = n - 2 * popcount(a XOR w).
Unused bits are 0 in both operands, so their XOR is 0 and they add nothing to the popcount.
Zero padding: torch pads the *binarised* input with zeros, so a padded position contributes 0
(not +-1) to the sum. The kernel therefore visits only the kernel positions that fall inside the
input and counts them: n = (valid positions) * C.

Output channels are the innermost loop, so LLVM vectorises the XOR-popcount across them (AVX2:
pshufb nibble popcounts; AVX-512 VPOPCNTDQ where the CPU has it); `fastmath=False` keeps the float
epilogue in IEEE order so results are reproducible.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic


@intrinsic
def popcount64(typingctx, value):
    """LLVM's ctpop on a uint64: one POPCNT instruction, or a vector popcount once vectorised."""
    signature = types.uint64(types.uint64)

    def codegen(context, builder, sig, args):
        return builder.ctpop(args[0])

    return signature, codegen


@njit(cache=True, fastmath=False, parallel=True)
def pack_activations(x, shift, packed):
    """Threshold (x + shift >= 0, in float32 like torch), binarise and pack channel-last words."""
    height, width, channels = x.shape
    words = packed.shape[2]
    for h in prange(height):
        for w in range(width):
            for j in range(words):
                base = j * 64
                count = min(64, channels - base)
                word = np.uint64(0)
                for b in range(count):
                    if x[h, w, base + b] + shift[base + b] >= np.float32(0.0):
                        word |= np.uint64(1) << np.uint64(b)
                packed[h, w, j] = word


@njit(cache=True, fastmath=False, parallel=True)
def binary_conv2d(packed, weights, kernel, stride, padding, channels, scale, bias, residual, has_residual, out):
    """out[h, w, o] = float32(scale[o] * dot + bias[o]) (+ residual[h, w, o]).

    dot is the exact integer +-1 convolution of the packed input with the packed weights, torch's
    zero padding included; scale/bias are float64 (the folded weight scale and BatchNorm).
    """
    height, width, words = packed.shape
    out_h, out_w, out_channels = out.shape
    for oh in prange(out_h):
        counts = np.empty(out_channels, np.uint64)
        for ow in range(out_w):
            counts[:] = 0
            valid = 0
            for ky in range(kernel):
                ih = oh * stride - padding + ky
                if ih < 0 or ih >= height:
                    continue
                for kx in range(kernel):
                    iw = ow * stride - padding + kx
                    if iw < 0 or iw >= width:
                        continue
                    valid += 1
                    position = ky * kernel + kx
                    for j in range(words):
                        word = packed[ih, iw, j]
                        for o in range(out_channels):
                            counts[o] += popcount64(word ^ weights[position, j, o])
            total = valid * channels
            for o in range(out_channels):
                dot = total - 2 * np.int64(counts[o])
                value = np.float32(scale[o] * dot + bias[o])
                if has_residual:
                    value += residual[oh, ow, o]
                out[oh, ow, o] = value


def pack_weight_signs(signs: np.ndarray) -> np.ndarray:
    """(Cout, Cin, k, k) booleans (True = +1) -> (k*k, Cw, Cout) uint64 words, unused bits 0."""
    out_channels, in_channels, kh, kw = signs.shape
    words = (in_channels + 63) // 64
    padded = np.zeros((kh * kw, words * 64, out_channels), dtype=np.uint64)
    padded[:, :in_channels, :] = signs.transpose(2, 3, 1, 0).reshape(kh * kw, in_channels, out_channels)
    bits = padded.reshape(kh * kw, words, 64, out_channels)
    weights = np.zeros((kh * kw, words, out_channels), dtype=np.uint64)
    for b in range(64):
        weights |= bits[:, :, b, :] << np.uint64(b)
    return weights


def packed_words(channels: int) -> int:
    return (channels + 63) // 64


__all__ = ["binary_conv2d", "pack_activations", "pack_weight_signs", "packed_words", "popcount64"]
