"""Integer kernels for the quantized (2/4/8-bit) convs and linears, compiled by numba to this CPU.

Every quantized operand is a sum of integer-valued *planes* times float coefficients (see
`quantized.py`): a +-1 plane (1-bit, and each half of a 2-bit operand) or an int8 plane (4/8 bits).
These kernels compute the exact integer convolution of every (input plane, weight plane) pair and
then combine the pairs in float64 with the coefficients and the fused epilogue:
`popcount_conv` (+-1 x +-1, fused), `im2col` + torch._int_mm + `combine` (int8 planes),
`direct_fused` / `depthwise_fused` (grouped, depthwise, linear; float32-exact), `direct_conv`
(grouped past the float32-exact bound; int32).

Layouts (batch 1, channel-last, as in `kernels.py`):
- input planes: (P, H, W, C) int8 (values +-1 or LSQ integers), or packed +-1 words
  (P, H, W, Cw) uint64 with kernels.py's bit convention (bit b of word j is channel 64j+b, 1 = +1,
  unused high bits 0);
- im2col rows: one row per output pixel, the k*k positions in (ky, kx) order, each position's
  channels contiguous; padded positions are 0 (int8) or the all-zero word (packed);
- pair results: (P_in, M, P_w * Cout) int32, M = Ho*Wo, weight plane j in columns j*Cout...

`fastmath=False` everywhere: the quantization must reproduce torch's float32 expressions exactly,
and the float epilogue must be reproducible.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .kernels import popcount64

# Activation quantizer codes shared with quantized.py.
SIGN, TWO_BIT, LSQ = 0, 1, 2
# Epilogue clamps.
NO_CLAMP, RELU, RELU6 = 0, 1, 2


@njit(cache=True, fastmath=False, inline="always")
def _lsq_level(value, step, qn, qp):
    # torch: round(clamp(x / step, qn, qp)). numba divides float32 by float32 in float64; that is
    # correctly rounded, and rounding it once more to float32 gives the correctly rounded float32
    # quotient (53 >= 2*24 + 2 bits), i.e. exactly torch's float32 division.
    scaled = np.float32(value / step)
    if scaled < qn:
        scaled = np.float32(qn)
    if scaled > qp:
        scaled = np.float32(qp)
    return np.rint(scaled)  # half to even, as torch.round


@njit(cache=True, fastmath=False, inline="always")
def _quantize_row(x, h, mode, threshold, outer_at, step, qn, qp, planes):
    """Row h of the input -> its integer planes (any numeric dtype: int8, or float32 for the
    float-exact direct kernel). The mode branch sits outside the channel loop so it vectorises."""
    _, width, channels = x.shape
    one, minus = planes.dtype.type(1), planes.dtype.type(-1)
    if mode == SIGN:
        for w in range(width):
            for c in range(channels):
                planes[0, h, w, c] = one if x[h, w, c] - threshold[c] >= np.float32(0.0) else minus
    elif mode == TWO_BIT:
        # No per-channel parameter: one flat loop over the row (the stem has C = 1 or 3, and
        # per-pixel loops of 3 cost ~20x more than one vectorised loop).
        row, s_row, t_row = x[h].reshape(-1), planes[0, h].reshape(-1), planes[1, h].reshape(-1)
        for n in range(row.size):
            value = row[n]
            positive = value >= np.float32(0.0)
            outer = abs(value) >= outer_at
            s_row[n] = one if positive else minus
            t_row[n] = one if positive == outer else minus
    else:
        row, q_row = x[h].reshape(-1), planes[0, h].reshape(-1)
        for n in range(row.size):
            q_row[n] = planes.dtype.type(_lsq_level(row[n], step, qn, qp))


@njit(cache=True, fastmath=False, parallel=True)
def quantize_int8(x, mode, threshold, outer_at, step, qn, qp, planes):
    """Input (H, W, C) float32 -> its integer planes (P, H, W, C) int8.

    SIGN: plane 0 = sign(x - threshold[c]) (0 goes to +1, as the quantizers' `_binary`);
    TWO_BIT: plane 0 = s = sign(x), plane 1 = t = s where |x| >= outer_at else -s;
    LSQ: plane 0 = round(clamp(x / step, qn, qp)).
    """
    for h in prange(x.shape[0]):
        _quantize_row(x, h, mode, threshold, outer_at, step, qn, qp, planes)


@njit(cache=True, fastmath=False, parallel=True)
def pack_signs(x, mode, threshold, outer_at, packed):
    """Input (H, W, C) float32 -> packed +-1 planes (P, H, W, Cw) uint64 (SIGN: 1 plane, TWO_BIT: s, t)."""
    height, width, channels = x.shape
    words = packed.shape[3]
    for h in prange(height):
        for w in range(width):
            for j in range(words):
                base = j * 64
                count = min(64, channels - base)
                s_word = np.uint64(0)
                t_word = np.uint64(0)
                for b in range(count):
                    value = x[h, w, base + b]
                    bit = np.uint64(1) << np.uint64(b)
                    if mode == SIGN:
                        if value - threshold[base + b] >= np.float32(0.0):
                            s_word |= bit
                    else:
                        positive = value >= np.float32(0.0)
                        if positive:
                            s_word |= bit
                        # t's bit is s's bit at the outer levels and its complement at the inner ones.
                        if positive == (abs(value) >= outer_at):
                            t_word |= bit
                packed[0, h, w, j] = s_word
                if mode == TWO_BIT:
                    packed[1, h, w, j] = t_word


@njit(cache=True, fastmath=False, parallel=True)
def im2col(planes, kernel, stride, padding, rows):
    """(P, H, W, C) planes -> (P, Ho*Wo, K) rows, K >= k*k*C (the tail stays 0); padding is 0.

    Works for int8 planes and for packed uint64 words alike (the all-zero word is "all -1", which
    the popcount combine corrects for at the borders).
    """
    count, height, width, channels = planes.shape
    out_h = (height + 2 * padding - kernel) // stride + 1
    out_w = (width + 2 * padding - kernel) // stride + 1
    zero = rows.dtype.type(0)
    for task in prange(count * out_h):
        p = task // out_h
        oh = task % out_h
        for ow in range(out_w):
            row = oh * out_w + ow
            for ky in range(kernel):
                ih = oh * stride - padding + ky
                for kx in range(kernel):
                    iw = ow * stride - padding + kx
                    base = (ky * kernel + kx) * channels
                    if ih < 0 or ih >= height or iw < 0 or iw >= width:
                        for c in range(channels):
                            rows[p, row, base + c] = zero
                    else:
                        for c in range(channels):
                            rows[p, row, base + c] = planes[p, ih, iw, c]


@njit(cache=True, fastmath=False, inline="always")
def _gather_words(packed, p, oh, ow, kernel, stride, padding, rows, r):
    """rows[r] = the im2col row of packed plane p at output pixel (oh, ow); 0 words where padded."""
    _, height, width, words = packed.shape
    for ky in range(kernel):
        ih = oh * stride - padding + ky
        for kx in range(kernel):
            iw = ow * stride - padding + kx
            # unsigned: numba adds no negative-index wraparound to an unsigned index
            base = np.uint64((ky * kernel + kx) * words)
            if ih < 0 or ih >= height or iw < 0 or iw >= width:
                for j in range(words):
                    rows[r, base + np.uint64(j)] = 0
            else:
                for j in range(words):
                    rows[r, base + np.uint64(j)] = packed[p, ih, iw, j]


@njit(cache=True, fastmath=False, inline="always")
def _popcount_rows4(rows, weights, acc):
    """acc[r, n] = sum_k popcount(rows[r, k] ^ weights[k, n]) for the 4 rows at once.

    Output columns innermost (LLVM vectorises them: AVX-512 VPOPCNTQ here); each weight vector
    loaded is used by 4 rows, and 4 K words are summed per accumulator update, which cuts the
    loads/stores that bound a one-row, one-word loop (measured ~1.7x over it at 56x56x64 W2A2;
    4 rows x 4 words beat 4 x 2 and 8 x 2). What is left is ~3 vector ops (XOR, POPCNT, ADD)
    per 512 bit-products, which on this double-pumped AVX-512 is the ALU limit.
    """
    k_words, columns = weights.shape
    acc[:, :] = 0
    k = 0
    while k + 4 <= k_words:
        a0, a1, a2, a3 = rows[0, k], rows[1, k], rows[2, k], rows[3, k]
        b0, b1, b2, b3 = rows[0, k + 1], rows[1, k + 1], rows[2, k + 1], rows[3, k + 1]
        c0, c1, c2, c3 = rows[0, k + 2], rows[1, k + 2], rows[2, k + 2], rows[3, k + 2]
        d0, d1, d2, d3 = rows[0, k + 3], rows[1, k + 3], rows[2, k + 3], rows[3, k + 3]
        for n in range(columns):
            x, y, z, v = weights[k, n], weights[k + 1, n], weights[k + 2, n], weights[k + 3, n]
            acc[0, n] += (popcount64(a0 ^ x) + popcount64(b0 ^ y)) + (popcount64(c0 ^ z) + popcount64(d0 ^ v))
            acc[1, n] += (popcount64(a1 ^ x) + popcount64(b1 ^ y)) + (popcount64(c1 ^ z) + popcount64(d1 ^ v))
            acc[2, n] += (popcount64(a2 ^ x) + popcount64(b2 ^ y)) + (popcount64(c2 ^ z) + popcount64(d2 ^ v))
            acc[3, n] += (popcount64(a3 ^ x) + popcount64(b3 ^ y)) + (popcount64(c3 ^ z) + popcount64(d3 ^ v))
        k += 4
    if k + 2 <= k_words:
        a0, a1, a2, a3 = rows[0, k], rows[1, k], rows[2, k], rows[3, k]
        b0, b1, b2, b3 = rows[0, k + 1], rows[1, k + 1], rows[2, k + 1], rows[3, k + 1]
        for n in range(columns):
            x, y = weights[k, n], weights[k + 1, n]
            acc[0, n] += popcount64(a0 ^ x) + popcount64(b0 ^ y)
            acc[1, n] += popcount64(a1 ^ x) + popcount64(b1 ^ y)
            acc[2, n] += popcount64(a2 ^ x) + popcount64(b2 ^ y)
            acc[3, n] += popcount64(a3 ^ x) + popcount64(b3 ^ y)
        k += 2
    if k < k_words:
        a0, a1, a2, a3 = rows[0, k], rows[1, k], rows[2, k], rows[3, k]
        for n in range(columns):
            x = weights[k, n]
            acc[0, n] += popcount64(a0 ^ x)
            acc[1, n] += popcount64(a1 ^ x)
            acc[2, n] += popcount64(a2 ^ x)
            acc[3, n] += popcount64(a3 ^ x)


@njit(cache=True, fastmath=False, inline="always")
def _popcount_row(rows, r, weights, acc):
    k_words, columns = weights.shape
    acc[r, :] = 0
    for k in range(k_words):
        a = rows[r, k]
        for n in range(columns):
            acc[r, n] += popcount64(a ^ weights[k, n])


@njit(cache=True, fastmath=False, parallel=True)
def popcount_conv(packed, weights, kernel, stride, padding, border_sums, coef, base,
                  residual, has_residual, clamp, want_counts, counts, out):
    """The whole +-1 conv in one pass: gather each output pixel's im2col row of every input
    plane, XOR-popcount it against every weight plane, combine the pair dots with the float
    coefficients and the epilogue (see `_finish`) and write out[h, w, o].

    packed (P, H, W, Cw) uint64 with P = 1 or 2 input planes; weights (k*k*Cw, Q*Cout) uint64.
    4 rows (plane, pixel) go through the popcount loop together: 4 pixels of one plane, or 2
    pixels of two planes. want_counts: also store the raw popcounts in counts (P, M, Q*Cout).

    With dot_ij = total_bits - 2*count_ij (+ the border correction), the combination
    sum_ij coef_ij * dot_ij + shift is computed as base + sum_ij (-2*coef_ij) * count_ij, with
    base[o] = shift[o] + total_bits * sum_ij coef[i, j, o] precomputed (in float64), which saves
    the integer work per element in this pass.
    Padded positions gather the all-zero word ("all -1"), so the sum there picked up -sum(w);
    border_sums[pos, q*Cout + o] = sum(w) adds it back (torch pads with 0, contributing nothing).
    """
    n_in, height, width, words = packed.shape
    k_words, columns = weights.shape
    out_h, out_w, out_channels = out.shape
    n_w = coef.shape[1]
    coef_counts = -2.0 * coef
    per_group = 4 // n_in
    for oh in prange(out_h):
        rows = np.empty((4, k_words), np.uint64)
        acc = np.empty((4, columns), np.uint64)
        dots = np.empty(columns, np.int64)
        total = np.empty(out_channels, np.float64)
        # (plane, channel) views made once: indexing [r, j*Cout + o] keeps numba's negative-index
        # wraparound on the computed index, which stops the combine loops vectorising (~2x).
        acc_planes = acc.reshape(4, n_w, out_channels)
        dot_planes = dots.reshape(n_w, out_channels)
        for ow0 in range(0, out_w, per_group):
            pixels = min(per_group, out_w - ow0)
            for q in range(pixels):
                for p in range(n_in):
                    _gather_words(packed, p, oh, ow0 + q, kernel, stride, padding, rows, q * n_in + p)
            if pixels == per_group:
                _popcount_rows4(rows, weights, acc)
            else:
                for r in range(pixels * n_in):
                    _popcount_row(rows, r, weights, acc)
            for q in range(pixels):
                ow = ow0 + q
                # the border correction: this pixel's padded positions
                border = False
                for ky in range(kernel):
                    ih = oh * stride - padding + ky
                    for kx in range(kernel):
                        iw = ow * stride - padding + kx
                        if ih < 0 or ih >= height or iw < 0 or iw >= width:
                            if not border:
                                dots[:] = 0
                                border = True
                            position = ky * kernel + kx
                            for n in range(columns):
                                dots[n] += border_sums[position, n]
                r = q * n_in
                if want_counts:
                    for i in range(n_in):
                        for n in range(columns):
                            counts[i, oh * out_w + ow, n] = np.int32(acc[r + i, n])
                # The pair terms in one loop per pixel, one branch per bit mix (n_in, n_w are 1
                # or 2): separate loops per pair and a separate epilogue loop measured ~2x slower.
                if n_in == 1 and n_w == 1:
                    for o in range(out_channels):
                        total[o] = base[o] + coef_counts[0, 0, o] * np.float64(acc_planes[r, 0, o])
                elif n_in == 1:
                    for o in range(out_channels):
                        total[o] = base[o] + (coef_counts[0, 0, o] * np.float64(acc_planes[r, 0, o])
                                              + coef_counts[0, 1, o] * np.float64(acc_planes[r, 1, o]))
                elif n_w == 1:
                    for o in range(out_channels):
                        total[o] = base[o] + (coef_counts[0, 0, o] * np.float64(acc_planes[r, 0, o])
                                              + coef_counts[1, 0, o] * np.float64(acc_planes[r + 1, 0, o]))
                else:
                    for o in range(out_channels):
                        total[o] = base[o] + ((coef_counts[0, 0, o] * np.float64(acc_planes[r, 0, o])
                                               + coef_counts[0, 1, o] * np.float64(acc_planes[r, 1, o]))
                                              + (coef_counts[1, 0, o] * np.float64(acc_planes[r + 1, 0, o])
                                                 + coef_counts[1, 1, o] * np.float64(acc_planes[r + 1, 1, o])))
                if border:
                    for i in range(n_in):
                        for j in range(n_w):
                            for o in range(out_channels):
                                total[o] += coef[i, j, o] * np.float64(dot_planes[j, o])
                for o in range(out_channels):
                    value = np.float32(total[o])
                    if has_residual:
                        value += residual[oh, ow, o]
                    if clamp != NO_CLAMP:
                        value = max(value, np.float32(0.0))
                        if clamp == RELU6:
                            value = min(value, np.float32(6.0))
                    out[oh, ow, o] = value


@njit(cache=True, fastmath=False, inline="always")
def _finish(total, shift, residual, has_residual, clamp, out, oh, ow):
    """out[oh, ow, o] = clamp(float32(total[o] + shift[o]) (+ residual)): the fused epilogue."""
    for o in range(out.shape[2]):
        value = np.float32(total[o] + shift[o])
        if has_residual:
            value += residual[oh, ow, o]
        if clamp != NO_CLAMP:
            if value < np.float32(0.0):
                value = np.float32(0.0)
            if clamp == RELU6 and value > np.float32(6.0):
                value = np.float32(6.0)
        out[oh, ow, o] = value


@njit(cache=True, fastmath=False, parallel=True)
def direct_conv(planes, weights, groups, kernel, stride, padding, out):
    """Grouped/depthwise integer conv: out[p, m, q*Cout + o] = sum x_p * w_q over o's group.

    planes (P, H, W, Cin) int8; weights (Q, k*k, Cin/groups, Cout) int8; int32 accumulation.
    The depthwise case (one input channel per group) keeps channels innermost and contiguous,
    which LLVM vectorises; the general grouped case loops group by group.
    """
    count, height, width, channels = planes.shape
    n_planes, positions, group_in, out_channels = weights.shape
    group_out = out_channels // groups
    out_h = (height + 2 * padding - kernel) // stride + 1
    out_w = (width + 2 * padding - kernel) // stride + 1
    for task in prange(count * out_h):
        p = task // out_h
        oh = task % out_h
        acc = np.empty(n_planes * out_channels, np.int32)
        for ow in range(out_w):
            acc[:] = 0
            for ky in range(kernel):
                ih = oh * stride - padding + ky
                if ih < 0 or ih >= height:
                    continue
                for kx in range(kernel):
                    iw = ow * stride - padding + kx
                    if iw < 0 or iw >= width:
                        continue
                    position = ky * kernel + kx
                    for q in range(n_planes):
                        base = q * out_channels
                        if group_in == 1 and group_out == 1:
                            for o in range(out_channels):
                                acc[base + o] += np.int32(planes[p, ih, iw, o]) * np.int32(weights[q, position, 0, o])
                        else:
                            for g in range(groups):
                                for c in range(group_in):
                                    value = np.int32(planes[p, ih, iw, g * group_in + c])
                                    for oo in range(group_out):
                                        o = g * group_out + oo
                                        acc[base + o] += value * np.int32(weights[q, position, c, o])
            for n in range(n_planes * out_channels):
                out[p, oh * out_w + ow, n] = acc[n]


@njit(cache=True, fastmath=False, parallel=True)
def direct_fused(x, mode, threshold, outer_at, step, qn, qp, planes, weights, groups, kernel, stride, padding,
                 coef, shift, residual, has_residual, clamp, want_pairs, pairs, out):
    """Small and grouped convs in one pass: quantize, direct conv, combine, epilogue.

    planes (P, H, W, Cin) float32 scratch; weights (Q, k*k, Cin/groups, Cout) float32. The planes
    and weights hold small integers and the caller checks that k*k*(Cin/groups) * max|x| * max|w|
    < 2^24, so every partial sum is an integer below 2^24 and the float32 FMAs are *exact*
    integer arithmetic, with the FMA throughput (int32 multiplies are several times slower here).
    One call instead of four (quantize, im2col, GEMM, combine) is what pays for the stem (Cin 1
    or 3, where im2col rows are 9-27 bytes) and for depthwise convs.
    want_pairs: also store the integer pair sums in pairs (P, Ho*Wo, Q*Cout) int32.
    """
    height, width, channels = x.shape
    n_in = planes.shape[0]
    n_w, positions, group_in, out_channels = weights.shape
    group_out = out_channels // groups
    out_h, out_w, _ = out.shape
    for h in prange(height):
        _quantize_row(x, h, mode, threshold, outer_at, step, qn, qp, planes)
    # Multi-dimensional indexing whose last index is the loop variable, and no array views in
    # the loops: a computed flat index keeps numba's negative-index wraparound (which blocks
    # vectorisation) and each view costs reference counting (both measured several times slower).
    grouped = weights.reshape(n_w, positions, group_in, groups, group_out)
    for oh in prange(out_h):
        acc = np.empty((n_in * n_w, groups, group_out), np.float32)
        flat = acc.reshape(n_in * n_w, out_channels)
        total = np.empty(out_channels, np.float64)
        for ow in range(out_w):
            acc[:] = 0.0
            for ky in range(kernel):
                ih = oh * stride - padding + ky
                if ih < 0 or ih >= height:
                    continue
                for kx in range(kernel):
                    iw = ow * stride - padding + kx
                    if iw < 0 or iw >= width:
                        continue
                    position = ky * kernel + kx
                    for i in range(n_in):
                        for q in range(n_w):
                            iq = i * n_w + q
                            if group_in == 1 and group_out == 1:  # depthwise: channel c is output o
                                for o in range(out_channels):
                                    flat[iq, o] += planes[i, ih, iw, o] * weights[q, position, 0, o]
                            else:
                                for c in range(group_in):
                                    for g in range(groups):
                                        value = planes[i, ih, iw, g * group_in + c]
                                        for oo in range(group_out):
                                            acc[iq, g, oo] += value * grouped[q, position, c, g, oo]
            total[:] = 0.0
            for i in range(n_in):
                for q in range(n_w):
                    for o in range(out_channels):
                        total[o] += coef[i, q, o] * np.float64(flat[i * n_w + q, o])
            if want_pairs:
                for i in range(n_in):
                    for q in range(n_w):
                        for o in range(out_channels):
                            pairs[i, oh * out_w + ow, q * out_channels + o] = np.int32(flat[i * n_w + q, o])
            _finish(total, shift, residual, has_residual, clamp, out, oh, ow)


@njit(cache=True, fastmath=False, parallel=True)
def depthwise_fused(x, mode, threshold, outer_at, step, qn, qp, planes, weights, packed_base, kernel, stride,
                    padding, coef, shift, residual, has_residual, clamp, want_pairs, pairs, out):
    """`direct_fused` for depthwise convs (groups == Cin == Cout): same float-exact arithmetic,
    but a whole output row accumulates at once, taps outermost, so each inner loop is a
    contiguous run over the channels with no per-pixel branching (measured ~2x over the
    general loop nest at 28x28x64).

    packed_base B > 0: two +-1 weight planes S, T arrive packed as one, S + B*T, so one
    accumulation gives D_S + B*D_T, which the output loop splits (B > 2*max|D_S|, so D_T is the
    nearest integer to acc/B, and the whole sum stays below 2^24: still exact). That halves the
    work for 2-bit weights.
    """
    height, width, channels = x.shape
    n_in = planes.shape[0]
    n_acc = weights.shape[0]  # weight planes accumulated: 1 when packed
    n_w = coef.shape[1]
    out_h, out_w, _ = out.shape
    for h in prange(height):
        _quantize_row(x, h, mode, threshold, outer_at, step, qn, qp, planes)
    for oh in prange(out_h):
        acc = np.zeros((n_in * n_acc, out_w, channels), np.float32)
        total = np.empty(channels, np.float64)
        for ky in range(kernel):
            ih = oh * stride - padding + ky
            if ih < 0 or ih >= height:
                continue
            for kx in range(kernel):
                position = ky * kernel + kx
                # output columns whose input column ow*stride - padding + kx is inside the image
                lo = max(0, (padding - kx + stride - 1) // stride)
                hi = min(out_w, (width - 1 + padding - kx) // stride + 1)
                for i in range(n_in):
                    for q in range(n_acc):
                        iq = i * n_acc + q
                        for ow in range(lo, hi):
                            iw = ow * stride - padding + kx
                            for c in range(channels):
                                acc[iq, ow, c] += planes[i, ih, iw, c] * weights[q, position, 0, c]
        for ow in range(out_w):
            total[:] = 0.0
            m = oh * out_w + ow
            if packed_base > 0:
                for i in range(n_in):
                    for c in range(channels):
                        value = np.float64(acc[i, ow, c])
                        upper = np.rint(value / packed_base)
                        lower = value - packed_base * upper
                        total[c] += coef[i, 0, c] * lower + coef[i, 1, c] * upper
                        if want_pairs:
                            pairs[i, m, c] = np.int32(lower)
                            pairs[i, m, channels + c] = np.int32(upper)
            else:
                for i in range(n_in):
                    for q in range(n_w):
                        for c in range(channels):
                            total[c] += coef[i, q, c] * np.float64(acc[i * n_w + q, ow, c])
                if want_pairs:
                    for i in range(n_in):
                        for q in range(n_w):
                            for c in range(channels):
                                pairs[i, m, q * channels + c] = np.int32(acc[i * n_w + q, ow, c])
            _finish(total, shift, residual, has_residual, clamp, out, oh, ow)


@njit(cache=True, fastmath=False, parallel=True)
def combine(pairs, coef, shift, residual, has_residual, clamp, out):
    """out[h, w, o] = clamp(float32(sum_ij coef[i, j, o] * pairs[i, m, j*Cout + o] + shift[o]) (+ residual)),
    m = h*Wo + w: the exact integer pair convolutions (P, M, Q*Cout) int32 combined in float64.
    Output channels innermost, so the float64 sums vectorise."""
    n_in, m_rows, columns = pairs.shape
    n_w = coef.shape[1]
    out_h, out_w, out_channels = out.shape
    if n_in == 1 and n_w == 1 and not has_residual:
        # One pair (4/8-bit x 4/8-bit): a single loop per pixel, the epilogue inlined.
        factors, flat = coef[0, 0], out.reshape(m_rows, out_channels)
        for m in prange(m_rows):
            source, target = pairs[0, m], flat[m]
            for o in range(out_channels):
                value = np.float32(factors[o] * np.float64(source[o]) + shift[o])
                if clamp != NO_CLAMP:
                    value = max(value, np.float32(0.0))
                    if clamp == RELU6:
                        value = min(value, np.float32(6.0))
                target[o] = value
        return
    for oh in prange(out_h):
        total = np.empty(out_channels, np.float64)
        for ow in range(out_w):
            m = oh * out_w + ow
            total[:] = 0.0
            for i in range(n_in):
                for j in range(n_w):
                    base = j * out_channels
                    for o in range(out_channels):
                        total[o] += coef[i, j, o] * np.float64(pairs[i, m, base + o])
            _finish(total, shift, residual, has_residual, clamp, out, oh, ow)


__all__ = ["LSQ", "NO_CLAMP", "RELU", "RELU6", "SIGN", "TWO_BIT", "combine", "depthwise_fused", "direct_conv", "direct_fused", "im2col", "pack_signs",
           "popcount_conv", "quantize_int8"]
