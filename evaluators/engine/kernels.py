"""The native kernels of the packed binary engine, compiled by numba to this CPU.

Layouts (batch 1, channel-last, so one pixel's channels are contiguous):
- float activations: (H, W, C) float32;
- packed activations: (H, W, Cw) uint64, Cw = ceil(C / 64); bit b of word j is channel 64*j + b,
  1 meaning +1 and 0 meaning -1; the unused high bits of the last word are 0;
- packed weights: (k*k, Cw, Cout) uint64, same bit convention, unused bits 0 (the stored format);
- prepared weights (`prepare_weights`): the same words as one flat array, rows (k*k*Cw) of
  Cout rounded up to a multiple of 16 (the padding lanes are never written out: 0, or a split
  tail's repeated outputs, see `split_lanes`), so one 16-output register block is two unaligned
  8-word vector loads.

The product of two +-1 values is +1 when their bits agree, so over n real channels
    dot = n - 2 * popcount(a XOR w).
Unused bits are 0 in both operands, so their XOR is 0 and they add nothing to the popcount.
Zero padding: torch pads the *binarised* input with zeros, so a padded position contributes 0
(not +-1) to the sum. The kernels therefore visit only the kernel positions that fall inside the
input and count them: n = (valid positions) * C.

Register blocking (engine v2): a block of output pixels along a row times 16 output channels is
accumulated in `simd.U64x8` vector variables (registers), each weight vector loaded once per block
and reused for every pixel, each input word broadcast once and reused for every output vector.
The k*Cw words of one kernel row are contiguous in both the input (channel-last) and the
prepared weights, so the inner loop is one flat run. AVX-512 (32 vector registers) takes
4 pixels x 16 outputs (8 accumulators); AVX2 (16 registers, each vector two YMM) takes 2 x 16.
Pixels whose window crosses the left/right border run one at a time with clipped columns.
`fastmath=False` keeps the float epilogue in IEEE order so results are reproducible.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

from . import isa
from .simd import (load_word, store_word, vadd, vbyte_sum, vload, vnibble_xpa, vnibble_xpa2, vsign_bits,
                   vsign_bits_masked, vstore_outputs, vstore_outputs_masked, vstore_outputs_residual,
                   vstore_outputs_residual_masked, vstore_outputs_residual_split, vstore_outputs_split, vxpa, vxpa2,
                   vzero)

BLOCK_OUTPUTS = 16  # output channels per register block: two 8-lane vectors
# The register blocking for the instruction set numba compiles for, frozen into the kernels as
# constants (numba's cache is keyed by the target CPU, so a cached kernel always matches them).
_WIDE = isa.wide_registers()
_NIBBLES = isa.isa_path() == "avx2"


@intrinsic
def popcount64(typingctx, value):
    """LLVM's ctpop on a uint64: one POPCNT instruction, or a vector popcount once vectorised."""
    signature = types.uint64(types.uint64)

    def codegen(context, builder, sig, args):
        return builder.ctpop(args[0])

    return signature, codegen


# ---- activations: threshold, binarise, pack -------------------------------------------------------

@njit(cache=True, fastmath=False)
def _pack_row(x, shift, packed, h):
    """Row h: each pixel's channels in runs of 8 (one vector compare and mask move each), the last
    run lane-masked, so a pixel costs ceil(C / 8) runs whatever the width: no scalar tail for
    the widths pruning leaves (12, 36, ...) and nothing read past the pixel's channels."""
    _, width, channels = x.shape
    words = packed.shape[2]
    x_ = x.ctypes.data
    shift_ = shift.ctypes.data
    packed_ = packed.ctypes.data
    for w in range(width):
        at = (h * width + w) * channels
        for j in range(words):
            word = np.uint64(0)
            for k in range(8):
                base = j * 64 + k * 8
                if base >= channels:
                    break
                if channels - base >= 8:
                    bits = vsign_bits(x_, at + base, shift_, base)
                else:
                    bits = vsign_bits_masked(x_, at + base, shift_, base, channels - base)
                word |= bits << np.uint64(k * 8)
            store_word(packed_, (h * width + w) * words + j, word)


@njit(cache=True, fastmath=False)
def _pack_serial(x, shift, packed):
    for h in range(x.shape[0]):
        _pack_row(x, shift, packed, h)


@njit(cache=True, fastmath=False, parallel=True)
def _pack_parallel(x, shift, packed):
    for h in prange(x.shape[0]):
        _pack_row(x, shift, packed, h)


def pack_activations(x, shift, packed):
    """Threshold (x + shift >= 0, in float32 like torch), binarise and pack channel-last words.
    x is read through its address as (H, W, C) in C order: a strided view is copied first."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    shift = np.ascontiguousarray(shift, dtype=np.float32)
    if not packed.flags.c_contiguous:  # written through its address too
        raise ValueError("pack_activations: the packed output must be C-contiguous")
    if numba.get_num_threads() > 1 and x.shape[0] > 1:
        _pack_parallel(x, shift, packed)
    else:
        _pack_serial(x, shift, packed)


# ---- the binary convolution -----------------------------------------------------------------------

@njit(cache=True, fastmath=False, inline="always")
def _block4(x, w, xbase, wbase, ky0, ky1, row_words, run, cpad, pixel_words, pair):
    """Four output pixels (input windows `pixel_words` apart) x 16 outputs: 8 vector accumulators
    (`pair` False: the block's last 8 outputs lie past Cout, so only the first vector is computed)."""
    a0 = vzero()
    a1 = vzero()
    b0 = vzero()
    b1 = vzero()
    c0 = vzero()
    c1 = vzero()
    d0 = vzero()
    d1 = vzero()
    for ky in range(ky0, ky1):
        xs = xbase + ky * row_words
        ws = wbase + ky * run * cpad
        for t in range(run):
            v0 = vload(w, ws + t * cpad)
            xa = load_word(x, xs + t)
            xb = load_word(x, xs + pixel_words + t)
            xc = load_word(x, xs + 2 * pixel_words + t)
            xd = load_word(x, xs + 3 * pixel_words + t)
            a0 = vxpa(a0, xa, v0)
            b0 = vxpa(b0, xb, v0)
            c0 = vxpa(c0, xc, v0)
            d0 = vxpa(d0, xd, v0)
            if pair:
                v1 = vload(w, ws + t * cpad + 8)
                a1 = vxpa(a1, xa, v1)
                b1 = vxpa(b1, xb, v1)
                c1 = vxpa(c1, xc, v1)
                d1 = vxpa(d1, xd, v1)
    return a0, a1, b0, b1, c0, c1, d0, d1


@njit(cache=True, fastmath=False, inline="always")
def _block2(x, w, xbase, wbase, ky0, ky1, row_words, run, cpad, pixel_words, half, pair):
    """AVX2: two output pixels x 16 outputs with the nibble-table popcount (simd.vnibble_xpa): byte
    accumulators (4 vectors = 8 YMM) summed into 64-bit lanes every <= 31 words (byte overflow)."""
    mask = np.uint64(0x0F0F0F0F0F0F0F0F)
    four = np.uint64(4)
    a0 = vzero()
    a1 = vzero()
    b0 = vzero()
    b1 = vzero()
    p0 = vzero()
    p1 = vzero()
    q0 = vzero()
    q1 = vzero()
    used = 0  # words in the byte accumulators: whole kernel rows share them until 31 would overflow
    for ky in range(ky0, ky1):
        xs = xbase + ky * row_words
        ws = wbase + ky * run * cpad
        for start in range(0, run, 31):
            stop = min(run, start + 31)
            if used + stop - start > 31:
                a0 = vadd(a0, vbyte_sum(p0))
                a1 = vadd(a1, vbyte_sum(p1))
                b0 = vadd(b0, vbyte_sum(q0))
                b1 = vadd(b1, vbyte_sum(q1))
                p0 = vzero()
                p1 = vzero()
                q0 = vzero()
                q1 = vzero()
                used = 0
            used += stop - start
            for t in range(start, stop):
                lo = ws + half + t * cpad
                hi = lo + half
                l0 = vload(w, lo)
                h0 = vload(w, hi)
                xa = load_word(x, xs + t)
                xb = load_word(x, xs + pixel_words + t)
                p0 = vnibble_xpa(p0, xa & mask, (xa >> four) & mask, l0, h0)
                q0 = vnibble_xpa(q0, xb & mask, (xb >> four) & mask, l0, h0)
                if pair:
                    l1 = vload(w, lo + 8)
                    h1 = vload(w, hi + 8)
                    p1 = vnibble_xpa(p1, xa & mask, (xa >> four) & mask, l1, h1)
                    q1 = vnibble_xpa(q1, xb & mask, (xb >> four) & mask, l1, h1)
    a0 = vadd(a0, vbyte_sum(p0))
    a1 = vadd(a1, vbyte_sum(p1))
    b0 = vadd(b0, vbyte_sum(q0))
    b1 = vadd(b1, vbyte_sum(q1))
    return a0, a1, b0, b1


@njit(cache=True, fastmath=False, inline="always")
def _block2_generic(x, w, xbase, wbase, ky0, ky1, row_words, run, cpad, pixel_words, pair):
    """Two output pixels x 16 outputs with LLVM's own vector popcount (targets without AVX2)."""
    a0 = vzero()
    a1 = vzero()
    b0 = vzero()
    b1 = vzero()
    for ky in range(ky0, ky1):
        xs = xbase + ky * row_words
        ws = wbase + ky * run * cpad
        for t in range(run):
            v0 = vload(w, ws + t * cpad)
            xa = load_word(x, xs + t)
            xb = load_word(x, xs + pixel_words + t)
            a0 = vxpa(a0, xa, v0)
            b0 = vxpa(b0, xb, v0)
            if pair:
                v1 = vload(w, ws + t * cpad + 8)
                a1 = vxpa(a1, xa, v1)
                b1 = vxpa(b1, xb, v1)
    return a0, a1, b0, b1


@njit(cache=True, fastmath=False, inline="always")
def _block4_split(x, w, xbase, wbase, ky0, ky1, row_words, run, cpad, pixel_words, first, split):
    """Four output pixels of a last block whose last live vector has <= 4 outputs (`split_lanes`):
    a full first vector per pixel if `first`, then one split vector per pixel pair (`vxpa2`),
    weights at wbase + `split`: 6 accumulators where `_block4` needs 8."""
    a0 = vzero()
    b0 = vzero()
    c0 = vzero()
    d0 = vzero()
    ab = vzero()
    cd = vzero()
    for ky in range(ky0, ky1):
        xs = xbase + ky * row_words
        ws = wbase + ky * run * cpad
        for t in range(run):
            xa = load_word(x, xs + t)
            xb = load_word(x, xs + pixel_words + t)
            xc = load_word(x, xs + 2 * pixel_words + t)
            xd = load_word(x, xs + 3 * pixel_words + t)
            if first:
                v0 = vload(w, ws + t * cpad)
                a0 = vxpa(a0, xa, v0)
                b0 = vxpa(b0, xb, v0)
                c0 = vxpa(c0, xc, v0)
                d0 = vxpa(d0, xd, v0)
            vs = vload(w, ws + t * cpad + split)
            ab = vxpa2(ab, xa, xb, vs)
            cd = vxpa2(cd, xc, xd, vs)
    return a0, b0, ab, c0, d0, cd


@njit(cache=True, fastmath=False, inline="always")
def _block2_split(x, w, xbase, wbase, ky0, ky1, row_words, run, cpad, pixel_words, half, first, split):
    """AVX2: `_block4_split` for two pixels with the nibble-table popcount (as `_block2`)."""
    mask = np.uint64(0x0F0F0F0F0F0F0F0F)
    four = np.uint64(4)
    a0 = vzero()
    b0 = vzero()
    ab = vzero()
    p0 = vzero()
    q0 = vzero()
    pq = vzero()
    used = 0
    for ky in range(ky0, ky1):
        xs = xbase + ky * row_words
        ws = wbase + ky * run * cpad
        for start in range(0, run, 31):
            stop = min(run, start + 31)
            if used + stop - start > 31:
                a0 = vadd(a0, vbyte_sum(p0))
                b0 = vadd(b0, vbyte_sum(q0))
                ab = vadd(ab, vbyte_sum(pq))
                p0 = vzero()
                q0 = vzero()
                pq = vzero()
                used = 0
            used += stop - start
            for t in range(start, stop):
                lo = ws + half + t * cpad
                hi = lo + half
                xa = load_word(x, xs + t)
                xb = load_word(x, xs + pixel_words + t)
                xa_lo = xa & mask
                xa_hi = (xa >> four) & mask
                xb_lo = xb & mask
                xb_hi = (xb >> four) & mask
                if first:
                    l0 = vload(w, lo)
                    h0 = vload(w, hi)
                    p0 = vnibble_xpa(p0, xa_lo, xa_hi, l0, h0)
                    q0 = vnibble_xpa(q0, xb_lo, xb_hi, l0, h0)
                pq = vnibble_xpa2(pq, xa_lo, xa_hi, xb_lo, xb_hi, vload(w, lo + split), vload(w, hi + split))
    a0 = vadd(a0, vbyte_sum(p0))
    b0 = vadd(b0, vbyte_sum(q0))
    ab = vadd(ab, vbyte_sum(pq))
    return a0, b0, ab


@njit(cache=True, fastmath=False, inline="always")
def _block2_generic_split(x, w, xbase, wbase, ky0, ky1, row_words, run, cpad, pixel_words, first, split):
    """`_block2_split` with LLVM's own vector popcount (targets without AVX2)."""
    a0 = vzero()
    b0 = vzero()
    ab = vzero()
    for ky in range(ky0, ky1):
        xs = xbase + ky * row_words
        ws = wbase + ky * run * cpad
        for t in range(run):
            xa = load_word(x, xs + t)
            xb = load_word(x, xs + pixel_words + t)
            if first:
                v0 = vload(w, ws + t * cpad)
                a0 = vxpa(a0, xa, v0)
                b0 = vxpa(b0, xb, v0)
            ab = vxpa2(ab, xa, xb, vload(w, ws + t * cpad + split))
    return a0, b0, ab


@njit(cache=True, fastmath=False, inline="always")
def _block1(x, w, xbase, wbase, ky0, ky1, kx0, kx1, kernel, row_words, words, cpad, pair):
    """One output pixel x 16 outputs, kernel columns kx0..kx1 only (a border pixel)."""
    a0 = vzero()
    a1 = vzero()
    for ky in range(ky0, ky1):
        for kx in range(kx0, kx1):
            xs = xbase + ky * row_words + kx * words
            ws = wbase + (ky * kernel + kx) * words * cpad
            for t in range(words):
                xa = load_word(x, xs + t)
                a0 = vxpa(a0, xa, vload(w, ws + t * cpad))
                if pair:
                    a1 = vxpa(a1, xa, vload(w, ws + t * cpad + 8))
    return a0, a1


@njit(cache=True, fastmath=False, inline="always")
def _emit(a0, a1, pixel, o0, cout, total, scale, bias, y, out_stride, r, has_residual, next_shift, z, out_words,
          has_pack, full):
    """The 16 counts of one output pixel (flat index `pixel`) -> outputs (and packed signs).

    Every array is an address here (see simd): this is inlined into the pixel loop. Full blocks
    finish in vector registers, the last, partial block of outputs too (lane-masked)."""
    at = pixel * out_stride + o0  # y: this conv's channels may be a slice of a wider output
    rat = pixel * cout + o0        # the residual: exactly this conv's channels
    if full:
        if has_residual:
            vstore_outputs_residual(a0, total, scale, bias, o0, y, at, r, rat)
            vstore_outputs_residual(a1, total, scale, bias, o0 + 8, y, at + 8, r, rat + 8)
        else:
            vstore_outputs(a0, total, scale, bias, o0, y, at)
            vstore_outputs(a1, total, scale, bias, o0 + 8, y, at + 8)
        if has_pack:
            bits = vsign_bits(y, at, next_shift, o0) | (vsign_bits(y, at + 8, next_shift, o0 + 8) << np.uint64(8))
            word = pixel * out_words + (o0 >> 6)
            store_word(z, word, load_word(z, word) | (bits << np.uint64(o0 & 63)))
        return
    # A partial block (a width of 12, 24, 36, ... as pruning leaves): its first 8 outputs, if it
    # has them, store from the register as above, the rest through a lane-masked store, so a
    # pruned width costs what its lanes do and nothing past Cout is read or written.
    first = 0
    bits = np.uint64(0)
    if cout - o0 >= 8:
        if has_residual:
            vstore_outputs_residual(a0, total, scale, bias, o0, y, at, r, rat)
        else:
            vstore_outputs(a0, total, scale, bias, o0, y, at)
        if has_pack:
            bits = vsign_bits(y, at, next_shift, o0)
        first = 8
    rest = cout - o0 - first
    if rest > 0:
        last = a1 if first else a0
        if has_residual:
            vstore_outputs_residual_masked(last, total, scale, bias, o0 + first, y, at + first, r, rat + first,
                                           rest)
        else:
            vstore_outputs_masked(last, total, scale, bias, o0 + first, y, at + first, rest)
        if has_pack:
            bits |= vsign_bits_masked(y, at + first, next_shift, o0 + first, rest) << np.uint64(first)
    if has_pack:
        word = pixel * out_words + (o0 >> 6)
        store_word(z, word, load_word(z, word) | (bits << np.uint64(o0 & 63)))


@njit(cache=True, fastmath=False, inline="always")
def _emit_split(va, vb, ab, pixel_a, pixel_b, o0, split, cout, total, scale, bias, y, out_stride, r, has_residual,
                next_shift, z, out_words, has_pack, first):
    """Two output pixels of a split last block (`_block4_split`): each pixel's full first vector
    if `first` (va, vb), then the split vector `ab` (outputs o0 + split .. cout - 1 of both)."""
    at_a = pixel_a * out_stride + o0
    at_b = pixel_b * out_stride + o0
    rat_a = pixel_a * cout + o0
    rat_b = pixel_b * cout + o0
    if first:
        if has_residual:
            vstore_outputs_residual(va, total, scale, bias, o0, y, at_a, r, rat_a)
            vstore_outputs_residual(vb, total, scale, bias, o0, y, at_b, r, rat_b)
        else:
            vstore_outputs(va, total, scale, bias, o0, y, at_a)
            vstore_outputs(vb, total, scale, bias, o0, y, at_b)
    rest = cout - o0 - split
    if has_residual:
        vstore_outputs_residual_split(ab, total, scale, bias, o0 + split, y, at_a + split, at_b + split, r,
                                      rat_a + split, rat_b + split, rest)
    else:
        vstore_outputs_split(ab, total, scale, bias, o0 + split, y, at_a + split, at_b + split, rest)
    if has_pack:
        for pixel, at in ((pixel_a, at_a), (pixel_b, at_b)):
            bits = vsign_bits_masked(y, at + split, next_shift, o0 + split, rest) << np.uint64(split)
            if first:
                bits |= vsign_bits(y, at, next_shift, o0)
            word = pixel * out_words + (o0 >> 6)
            store_word(z, word, load_word(z, word) | (bits << np.uint64(o0 & 63)))


@njit(cache=True, fastmath=False)
def _conv_row(x, height, width, words, w, cpad, kernel, stride, padding, channels, scale, bias, y, out_stride,
              out_first, r, has_residual, out_w, oh, next_shift, z, out_words, has_pack, o_begin, o_end, clear):
    """Output row `oh`, output channels o_begin..o_end (whole 16-blocks), of the binary conv on flat
    arrays: x packed input, w prepared weights, y the float output (out_h, out_w, out_stride), this
    conv's Cout channels written from channel `out_first` on, r the residual (out_h, out_w, Cout),
    z the packed output (out_h, out_w, out_words), zeroed here if `clear`."""
    cout = scale.shape[0]
    if has_pack and clear:
        for i in range(oh * out_w * out_words, (oh + 1) * out_w * out_words):
            z[i] = 0
    # Addresses for the inlined helpers (no reference counting in the pixel loop); every array
    # here outlives the call.
    xa_ = x.ctypes.data
    wa_ = w.ctypes.data
    scale_ = scale.ctypes.data
    bias_ = bias.ctypes.data
    y_ = y.ctypes.data + out_first * 4  # float32: this conv's first channel
    r_ = r.ctypes.data
    shift_ = next_shift.ctypes.data
    z_ = z.ctypes.data
    ih0 = oh * stride - padding
    ky0 = max(0, -ih0)
    ky1 = min(kernel, height - ih0)
    run = kernel * words            # one kernel row of one pixel: contiguous words
    row_words = width * words
    pixel_words = stride * words
    # Output columns whose whole window lies inside the input.
    ow_lo = (padding + stride - 1) // stride
    ow_hi = min(out_w, (width + padding - kernel) // stride + 1)
    block = 4 if _WIDE else 2
    inner = (ky1 - ky0) * kernel * channels
    half = kernel * kernel * words * cpad  # the nibble copies follow the words (prepare_weights)
    last_split = split_lanes(cout)
    for o0 in range(o_begin, o_end, BLOCK_OUTPUTS):
        full = o0 + BLOCK_OUTPUTS <= cout
        pair = o0 + 8 < cout  # False: outputs o0 + 8.. are padding (a width of 8, 24, 40, ...)
        split = last_split - o0 if o0 <= last_split < o0 + BLOCK_OUTPUTS else -1
        pixel = oh * out_w
        ow = 0
        while ow < out_w:
            iw0 = ow * stride - padding
            xbase = (ih0 * width + iw0) * words
            if ow >= ow_lo and ow + block <= ow_hi and split >= 0:
                # This block's last vector holds <= 4 outputs: pixel pairs share it (`split_lanes`).
                first = split == 8
                if _WIDE:
                    a0, b0, ab, c0, d0, cd = _block4_split(xa_, wa_, xbase, o0, ky0, ky1, row_words, run, cpad,
                                                           pixel_words, first, split)
                    _emit_split(a0, b0, ab, pixel + ow, pixel + ow + 1, o0, split, cout, inner, scale_, bias_, y_,
                                out_stride, r_, has_residual, shift_, z_, out_words, has_pack, first)
                    _emit_split(c0, d0, cd, pixel + ow + 2, pixel + ow + 3, o0, split, cout, inner, scale_, bias_, y_,
                                out_stride, r_, has_residual, shift_, z_, out_words, has_pack, first)
                else:
                    if _NIBBLES:
                        a0, b0, ab = _block2_split(xa_, wa_, xbase, o0, ky0, ky1, row_words, run, cpad, pixel_words,
                                                   half, first, split)
                    else:
                        a0, b0, ab = _block2_generic_split(xa_, wa_, xbase, o0, ky0, ky1, row_words, run, cpad,
                                                           pixel_words, first, split)
                    _emit_split(a0, b0, ab, pixel + ow, pixel + ow + 1, o0, split, cout, inner, scale_, bias_, y_,
                                out_stride, r_, has_residual, shift_, z_, out_words, has_pack, first)
                ow += block
            elif ow >= ow_lo and ow + block <= ow_hi:
                if _WIDE:
                    a0, a1, b0, b1, c0, c1, d0, d1 = _block4(xa_, wa_, xbase, o0, ky0, ky1, row_words, run, cpad,
                                                             pixel_words, pair)
                    _emit(a0, a1, pixel + ow, o0, cout, inner, scale_, bias_, y_, out_stride, r_, has_residual, shift_, z_,
                          out_words, has_pack, full)
                    _emit(b0, b1, pixel + ow + 1, o0, cout, inner, scale_, bias_, y_, out_stride, r_, has_residual, shift_, z_,
                          out_words, has_pack, full)
                    _emit(c0, c1, pixel + ow + 2, o0, cout, inner, scale_, bias_, y_, out_stride, r_, has_residual, shift_, z_,
                          out_words, has_pack, full)
                    _emit(d0, d1, pixel + ow + 3, o0, cout, inner, scale_, bias_, y_, out_stride, r_, has_residual, shift_, z_,
                          out_words, has_pack, full)
                else:
                    if _NIBBLES:
                        a0, a1, b0, b1 = _block2(xa_, wa_, xbase, o0, ky0, ky1, row_words, run, cpad, pixel_words,
                                                 half, pair)
                    else:
                        a0, a1, b0, b1 = _block2_generic(xa_, wa_, xbase, o0, ky0, ky1, row_words, run, cpad,
                                                         pixel_words, pair)
                    _emit(a0, a1, pixel + ow, o0, cout, inner, scale_, bias_, y_, out_stride, r_, has_residual, shift_, z_,
                          out_words, has_pack, full)
                    _emit(b0, b1, pixel + ow + 1, o0, cout, inner, scale_, bias_, y_, out_stride, r_, has_residual, shift_, z_,
                          out_words, has_pack, full)
                ow += block
            else:
                kx0 = max(0, -iw0)
                kx1 = min(kernel, width - iw0)
                a0, a1 = _block1(xa_, wa_, xbase, o0, ky0, ky1, kx0, kx1, kernel, row_words, words, cpad, pair)
                _emit(a0, a1, pixel + ow, o0, cout, (ky1 - ky0) * (kx1 - kx0) * channels, scale_, bias_, y_, out_stride, r_,
                      has_residual, shift_, z_, out_words, has_pack, full)
                ow += 1


@njit(cache=True, fastmath=False)
def _conv_serial(packed, w, cpad, kernel, stride, padding, channels, scale, bias, residual, has_residual, out,
                 out_first, next_shift, packed_out, has_pack):
    height, width, words = packed.shape
    out_h, out_w, out_stride = out.shape
    x = packed.reshape(-1)
    y = out.reshape(-1)
    r = residual.reshape(-1)
    z = packed_out.reshape(-1)
    if has_pack:
        z[:] = 0
    for oh in range(out_h):
        _conv_row(x, height, width, words, w, cpad, kernel, stride, padding, channels, scale, bias, y, out_stride,
                  out_first, r, has_residual, out_w, oh, next_shift, z, packed_out.shape[2], has_pack, 0, cpad, False)


@njit(cache=True, fastmath=False, parallel=True)
def _conv_parallel(packed, w, cpad, kernel, stride, padding, channels, scale, bias, residual, has_residual, out,
                   out_first, next_shift, packed_out, has_pack):
    height, width, words = packed.shape
    out_h, out_w, out_stride = out.shape
    x = packed.reshape(-1)
    y = out.reshape(-1)
    r = residual.reshape(-1)
    z = packed_out.reshape(-1)
    for oh in prange(out_h):
        _conv_row(x, height, width, words, w, cpad, kernel, stride, padding, channels, scale, bias, y, out_stride,
                  out_first, r, has_residual, out_w, oh, next_shift, z, packed_out.shape[2], has_pack, 0, cpad, True)


@njit(cache=True)
def split_lanes(out_channels):
    """The first output of a split tail, or -1 where there is none.

    A width whose last 8-lane vector holds at most 4 outputs (12 = 8 + 4, 18 = 16 + 2, 36, ...,
    the widths pruning leaves) would spend a whole vector, and a masked epilogue, on those few
    lanes. Instead the prepared weights repeat those <= 4 outputs in the vector's upper half and
    two pixels share it (simd.vxpa2), so the tail costs half a vector per pixel."""
    last = (out_channels - 1) // 8 * 8  # the last vector's first output
    return last if out_channels - last <= 4 else -1


def prepare_weights(weights: np.ndarray) -> np.ndarray:
    """(k*k, Cw, Cout) packed weights -> the flat kernel layout: (k*k*Cw) rows of Cout padded to 16,
    three times: the words, their low nibbles (w & 0x0f..) and their high nibbles ((w >> 4) &
    0x0f..), the last two for the AVX2 table popcount (see simd). Where the last vector is a
    split tail (`split_lanes`), its outputs are repeated in the 4 lanes above them."""
    positions, words, out_channels = weights.shape
    cpad = -(-out_channels // BLOCK_OUTPUTS) * BLOCK_OUTPUTS
    prepared = np.zeros((3, positions * words, cpad), dtype=np.uint64)
    prepared[0, :, :out_channels] = weights.reshape(positions * words, out_channels)
    split = split_lanes(out_channels)
    if split >= 0:
        prepared[0, :, split + 4:split + 8] = prepared[0, :, split:split + 4]
    mask = np.uint64(0x0F0F0F0F0F0F0F0F)
    prepared[1] = prepared[0] & mask
    prepared[2] = (prepared[0] >> np.uint64(4)) & mask
    return prepared.reshape(-1)


_NO_PACK = np.zeros((0, 0, 0), dtype=np.uint64)
_NO_SHIFT = np.zeros(0, dtype=np.float32)


def binary_conv2d_prepared(packed, prepared, kernel, stride, padding, channels, scale, bias, residual, has_residual,
                           out, next_shift=None, packed_out=None, out_first=0):
    """`binary_conv2d` with weights from `prepare_weights`; with `next_shift` and `packed_out` it also
    writes sign(out + next_shift) packed (the next binary conv's input), saving a float round trip.
    `out` may be wider than Cout: the outputs go to its channels out_first .. out_first + Cout (a
    concatenation written in place); the residual, if any, has exactly Cout channels."""
    has_pack = packed_out is not None
    if not 0 <= out_first <= out.shape[2] - scale.shape[0] or (has_pack and out.shape[2] != scale.shape[0]):
        raise ValueError(f"binary conv: {scale.shape[0]} outputs from channel {out_first} do not fit an output of "
                         f"{out.shape[2]} channels{' with a packed output' if has_pack else ''}")
    cpad = prepared.shape[0] // (3 * kernel * kernel * packed.shape[2])
    arguments = (packed, prepared, cpad, kernel, stride, padding, channels, scale, bias, residual, has_residual, out,
                 out_first, _NO_SHIFT if next_shift is None else next_shift,
                 packed_out if has_pack else _NO_PACK, has_pack)
    if numba.get_num_threads() > 1 and out.shape[0] > 1:
        _conv_parallel(*arguments)
    else:
        _conv_serial(*arguments)


def binary_conv2d(packed, weights, kernel, stride, padding, channels, scale, bias, residual, has_residual, out):
    """out[h, w, o] = float32(scale[o] * dot + bias[o]) (+ residual[h, w, o]).

    dot is the exact integer +-1 convolution of the packed input with the packed weights, torch's
    zero padding included; scale/bias are float64 (the folded weight scale and BatchNorm). Runs on
    numba's current thread count: a plain loop on one thread, rows in parallel on more.
    """
    binary_conv2d_prepared(packed, prepare_weights(weights), kernel, stride, padding, channels, scale, bias, residual,
                           has_residual, out)


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


__all__ = ["BLOCK_OUTPUTS", "binary_conv2d", "binary_conv2d_prepared", "pack_activations", "pack_weight_signs",
           "packed_words", "popcount64", "prepare_weights"]
