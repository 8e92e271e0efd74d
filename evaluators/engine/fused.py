"""A whole ReActNet block in one native call, for batch-1 latency on one thread.

Run step by step, a ReActNet block makes seven native calls (pack and conv for the k x k conv, its
RPReLU, pack and conv for each 1x1 copy, the last RPReLU), and each costs 2-4 us in Python and
numba's argument dispatch before any work: a 1x1 conv of 16 channels at 28x28 took 11 us, of which
about 4 us did not depend on its size (measured on a Zen 4 VM). `react_block` runs the same kernels
in the same order inside one compiled function, so its results are bit for bit those of the steps
(tests/test_engine_network.py); `reactnet_small` ran 1.63x faster so, side by side in one process.
The per-call cost was not what kept pruning from paying, though: both networks lost the same share.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .glue_kernels import _avg_pool, _rprelu, pooled_size
from .kernels import _conv_serial, _pack_serial

SHORTCUT_IDENTITY = 0
SHORTCUT_AVG_POOL = 1


@njit(cache=True, fastmath=False)
def react_block(x, shift_k, weights_k, cpad_k, kernel, stride, padding, scale_k, bias_k, shortcut, pool,
                rprelu_k, shifts_1x1, weights_1x1, cpad_1x1, scales_1x1, biases_1x1, rprelu_1x1):
    """x (H, W, C) -> the block's output (H', W', C * copies).

    `shortcut`: SHORTCUT_IDENTITY or SHORTCUT_AVG_POOL with `pool` = (kernel, stride, ceil) for the
    k x k conv's residual; `rprelu_*`: (shift_in, slope, shift_out) tiled along an output row
    (NativeRPReLU._tiled); the 1x1 copies' arrays are tuples, one entry per copy."""
    height, width, channels = x.shape
    no_shift = np.zeros(0, dtype=np.float32)  # no fused packed output (a global array would be read-only)
    no_pack = np.zeros((0, 0, 0), dtype=np.uint64)
    packed = np.empty((height, width, (channels + 63) // 64), dtype=np.uint64)
    _pack_serial(x, shift_k, packed)
    if shortcut == SHORTCUT_AVG_POOL:
        residual = np.empty((pooled_size(height, pool[0], pool[1], pool[2] != 0),
                             pooled_size(width, pool[0], pool[1], pool[2] != 0), channels), dtype=np.float32)
        _avg_pool(x, pool[0], pool[1], residual)
    else:
        residual = x
    out_h = (height + 2 * padding - kernel) // stride + 1
    out_w = (width + 2 * padding - kernel) // stride + 1
    conv_k = np.empty((out_h, out_w, scale_k.shape[0]), dtype=np.float32)
    _conv_serial(packed, weights_k, cpad_k, kernel, stride, padding, channels, scale_k, bias_k, residual, True, conv_k,
                 0, no_shift, no_pack, False)
    y = np.empty_like(conv_k)
    _rprelu(conv_k, rprelu_k[0], rprelu_k[1], rprelu_k[2], y)
    middle = y.shape[2]
    total = 0
    for scale in scales_1x1:
        total += scale.shape[0]
    out = np.empty((out_h, out_w, total), dtype=np.float32)
    packed_y = np.empty((out_h, out_w, (middle + 63) // 64), dtype=np.uint64)
    first = 0
    for index in range(len(scales_1x1)):
        _pack_serial(y, shifts_1x1[index], packed_y)
        _conv_serial(packed_y, weights_1x1[index], cpad_1x1, 1, 1, 0, middle, scales_1x1[index], biases_1x1[index],
                     y, True, out, first, no_shift, no_pack, False)
        first += scales_1x1[index].shape[0]
    result = np.empty_like(out)
    _rprelu(out, rprelu_1x1[0], rprelu_1x1[1], rprelu_1x1[2], result)
    return result


__all__ = ["SHORTCUT_AVG_POOL", "SHORTCUT_IDENTITY", "react_block"]
