"""A native 8 x uint64 vector value for the numba kernels, so accumulators live in registers.

numba has no vector types: a block of accumulators written as an array lives in memory (LLVM
cannot prove it does not alias the operands, so every update is a load and a store), and LLVM's
loop vectoriser only vectorises innermost loops. `U64x8` is a numba type whose LLVM
representation *is* `<8 x i64>`, so a kernel can hold e.g. 8 of them as plain local variables
(phi nodes of vector type, i.e. registers) and each operation below is a few vector instructions:

- AVX-512 VPOPCNTDQ: one ZMM register, `vpopcntq`;
- AVX2: two YMM registers, LLVM's pshufb nibble-table popcount;
- anything else: whatever LLVM legalises `<8 x i64>` to on the target.

Only target-independent LLVM IR is emitted (no x86 intrinsics), so the same source compiles for
every CPU numba targets.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

LANES = 8


class U64x8Type(types.Type):
    def __init__(self):
        super().__init__(name="U64x8")


u64x8 = U64x8Type()
_VECTOR = ir.VectorType(ir.IntType(64), LANES)


@register_model(U64x8Type)
class _U64x8Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VECTOR)


def _element_pointer(context, builder, base_type, base, offset_type, offset, element):
    """Pointer to element `offset` of `base`: a 1-D C-contiguous array, or an integer address
    (`array.ctypes.data`). Addresses let the hot loops' helpers take no array arguments, so
    numba emits no reference counting (NRT incref/decref, atomics) for them when they are
    inlined; the caller keeps the arrays alive. No bounds checks: callers keep offsets in range."""
    if isinstance(base_type, types.Array):
        data = context.make_array(base_type)(context, builder, base).data
        data = builder.bitcast(data, element.as_pointer())
    else:
        data = builder.inttoptr(context.cast(builder, base, base_type, types.uintp), element.as_pointer())
    return builder.gep(data, [context.cast(builder, offset, offset_type, types.intp)])


def _vector_pointer(context, builder, base_type, base, offset_type, offset, element):
    pointer = _element_pointer(context, builder, base_type, base, offset_type, offset, element)
    return builder.bitcast(pointer, ir.VectorType(element, LANES).as_pointer())


def _is_base(base, dtype) -> bool:
    if isinstance(base, types.Array):
        return base.ndim == 1 and base.dtype == dtype and base.layout == "C"
    return isinstance(base, types.Integer)


def _ctpop(builder):
    # llvmlite's builder.ctpop accepts scalars only; the vector form is the same LLVM intrinsic.
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VECTOR, [_VECTOR]), "llvm.ctpop.v8i64")


def _broadcast(builder, scalar):
    return builder.shuffle_vector(builder.insert_element(ir.Constant(_VECTOR, ir.Undefined), scalar,
                                                         ir.Constant(ir.IntType(32), 0)),
                                  ir.Constant(_VECTOR, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))


_I64 = ir.IntType(64)
_F32 = ir.FloatType()
_F64 = ir.DoubleType()


@intrinsic
def vzero(typingctx):
    """All-zero vector."""

    def codegen(context, builder, sig, args):
        return ir.Constant(_VECTOR, None)

    return u64x8(), codegen


@intrinsic
def vload(typingctx, base, offset):
    """base[offset : offset + 8] (uint64) as a vector (unaligned load)."""
    if not _is_base(base, types.uint64) or not isinstance(offset, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        pointer = _vector_pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1], _I64)
        return builder.load(pointer, align=8)

    return u64x8(base, offset), codegen


@intrinsic
def load_word(typingctx, base, offset):
    """base[offset] (uint64) without numba's negative-index wraparound (two extra instructions per
    load in the inner loop otherwise)."""
    if not _is_base(base, types.uint64) or not isinstance(offset, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        return builder.load(_element_pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1], _I64),
                            align=8)

    return types.uint64(base, offset), codegen


def _scalar_store(dtype, element):
    @intrinsic
    def store(typingctx, base, offset, value):
        if not _is_base(base, dtype) or not isinstance(offset, types.Integer):
            return None

        def codegen(context, builder, sig, args):
            value = context.cast(builder, args[2], sig.args[2], dtype)
            builder.store(value, _element_pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1], element))
            return context.get_dummy_value()

        return types.none(base, offset, value), codegen

    return store


# A uint64 word stored at an address: packed activations, and the conv's fused packed output.
store_word = _scalar_store(types.uint64, _I64)


@intrinsic
def vxpa(typingctx, accumulator, word, weights):
    """accumulator + popcount(broadcast(word) XOR weights), lane by lane: the XNOR-popcount step.

    Each lane adds at most 64 per call, so uint64 lanes cannot overflow for any real layer."""
    if accumulator != u64x8 or weights != u64x8 or not isinstance(word, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        accumulator_value, word_value, weights_value = args
        broadcast = _broadcast(builder, context.cast(builder, word_value, sig.args[1], types.uint64))
        counts = builder.call(_ctpop(builder), [builder.xor(broadcast, weights_value)])
        return builder.add(accumulator_value, counts)

    return u64x8(accumulator, word, weights), codegen


def _pair_broadcast(builder, first, second):
    """<first x 4, second x 4>: two pixels' input words, one per half of the vector."""
    pair = builder.insert_element(builder.insert_element(ir.Constant(_VECTOR, ir.Undefined), first,
                                                         ir.Constant(ir.IntType(32), 0)),
                                  second, ir.Constant(ir.IntType(32), 4))
    return builder.shuffle_vector(pair, ir.Constant(_VECTOR, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0, 0, 0, 0, 4, 4, 4, 4]))


@intrinsic
def vxpa2(typingctx, accumulator, word_a, word_b, weights):
    """`vxpa` for a split vector: lanes 0-3 take pixel a's word, lanes 4-7 pixel b's, against
    weights whose two halves hold the same 4 outputs (prepare_weights' split tail). Two pixels'
    last <= 4 outputs cost one vector instead of two."""
    if accumulator != u64x8 or weights != u64x8 or not isinstance(word_a, types.Integer) \
            or not isinstance(word_b, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        words = _pair_broadcast(builder, context.cast(builder, args[1], sig.args[1], types.uint64),
                                context.cast(builder, args[2], sig.args[2], types.uint64))
        counts = builder.call(_ctpop(builder), [builder.xor(words, args[3])])
        return builder.add(args[0], counts)

    return u64x8(accumulator, word_a, word_b, weights), codegen


def _lane_mask(context, builder, count, count_type):
    """<8 x i1>: lanes 0 .. count-1 set (count in 0..8): the live lanes of a partial block."""
    lanes = ir.Constant(_VECTOR, list(range(LANES)))
    return builder.icmp_signed("<", lanes, _broadcast(builder, context.cast(builder, count, count_type, types.int64)))


_MASK8 = ir.VectorType(ir.IntType(1), LANES)


def _half_mask(context, builder, count, count_type):
    """<4 x i1>: lanes 0 .. count-1 set (count in 1..4): the live lanes of each half of a split vector."""
    return builder.shuffle_vector(_lane_mask(context, builder, count, count_type), ir.Constant(_MASK8, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), 4), [0, 1, 2, 3]))



def _masked_load(builder, pointer, element, mask):
    """The masked lanes of the len(mask) elements at `pointer` (the rest 0): nothing past them is read."""
    lanes = mask.type.count
    vector = ir.VectorType(element, lanes)
    load = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vector, [pointer.type, ir.IntType(32), mask.type, vector]),
        f"llvm.masked.load.v{lanes}{'f32' if element == _F32 else 'f64'}.p0")
    return builder.call(load, [pointer, ir.Constant(ir.IntType(32), 4), mask, ir.Constant(vector, None)])


def _masked_store(builder, value, pointer, mask):
    """Store the masked lanes of `value` (float32) at `pointer`; nothing past them is written."""
    store = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [value.type, pointer.type, ir.IntType(32), mask.type]),
        f"llvm.masked.store.v{mask.type.count}f32.p0")
    builder.call(store, [value, pointer, ir.Constant(ir.IntType(32), 4), mask])


def _load_vector(context, builder, base_type, base, offset_type, offset, element, mask, lanes=LANES):
    """`lanes` elements at base[offset]: one plain vector load, or a masked one on a partial block."""
    pointer = _element_pointer(context, builder, base_type, base, offset_type, offset, element)
    if mask is None:
        return builder.load(builder.bitcast(pointer, ir.VectorType(element, lanes).as_pointer()), align=4)
    return _masked_load(builder, pointer, element, mask)


def _store_vector(context, builder, value, base_type, base, offset_type, offset, mask):
    """Store the float32 vector `value` (any lane count) at base[offset], on the `mask` lanes if given."""
    pointer = _element_pointer(context, builder, base_type, base, offset_type, offset, _F32)
    if mask is None:
        builder.store(value, builder.bitcast(pointer, value.type.as_pointer()), align=4)
    else:
        _masked_store(builder, value, pointer, mask)


def _dot(context, builder, counts, total, total_type):
    """total - 2 * counts on 8 lanes, as float64: the +-1 dot products of the popcounts."""
    totals = _broadcast(builder, context.cast(builder, total, total_type, types.int64))
    dot = builder.sub(totals, builder.shl(counts, ir.Constant(_VECTOR, [1] * LANES)))
    # |dot| <= k*k*C < 2**31, so int32 holds it exactly and int32 -> float64 gives the same double
    # as int64 -> float64; AVX2 has no int64 -> float64 vector conversion (LLVM emulates it).
    return builder.sitofp(builder.trunc(dot, ir.VectorType(ir.IntType(32), LANES)), ir.VectorType(_F64, LANES))


def _finish(context, builder, sig, args, mask=None):
    """float32(scale * (total - 2 * counts) + bias) on 8 lanes: int64 -> float64, multiply, add
    (no FMA contraction: the IR carries no fast-math flags), then round to float32: the scalar
    formula, lane by lane, bit for bit. With a lane `mask`, scale and bias are read on its lanes only."""
    counts, total, scale, bias, index = args[:5]
    dot_f = _dot(context, builder, counts, total, sig.args[1])
    scales = _load_vector(context, builder, sig.args[2], scale, sig.args[4], index, _F64, mask)
    biases = _load_vector(context, builder, sig.args[3], bias, sig.args[4], index, _F64, mask)
    return builder.fptrunc(builder.fadd(builder.fmul(scales, dot_f), biases), ir.VectorType(_F32, LANES))


def _outputs_codegen(residual: bool, masked: bool):
    """out[out_offset : +8] = _finish(...) (+ residual[residual_offset : +8]), on the first `count`
    lanes only when `masked` (the last, partial block of outputs: nothing past Cout is touched)."""

    def codegen(context, builder, sig, args):
        mask = _lane_mask(context, builder, args[-1], sig.args[-1]) if masked else None
        value = _finish(context, builder, sig, args, mask)
        if residual:
            value = builder.fadd(value, _load_vector(context, builder, sig.args[7], args[7], sig.args[8], args[8], _F32,
                                                     mask))
        _store_vector(context, builder, value, sig.args[5], args[5], sig.args[6], args[6], mask)
        return context.get_dummy_value()

    return codegen


def _outputs_typed(counts, scale, bias, out, residual=None) -> bool:
    return counts == u64x8 and _is_base(scale, types.float64) and _is_base(bias, types.float64) and \
        _is_base(out, types.float32) and (residual is None or _is_base(residual, types.float32))


@intrinsic
def vstore_outputs(typingctx, counts, total, scale, bias, index, out, out_offset):
    """out[out_offset : +8] = float32(scale[index : +8] * (total - 2 * counts) + bias[index : +8])."""
    if not _outputs_typed(counts, scale, bias, out):
        return None
    return types.none(counts, total, scale, bias, index, out, out_offset), _outputs_codegen(False, False)


@intrinsic
def vstore_outputs_residual(typingctx, counts, total, scale, bias, index, out, out_offset, residual, residual_offset):
    """As `vstore_outputs`, plus residual[residual_offset : +8] added in float32 (after the rounding)."""
    if not _outputs_typed(counts, scale, bias, out, residual) or not isinstance(residual_offset, types.Integer):
        return None
    return (types.none(counts, total, scale, bias, index, out, out_offset, residual, residual_offset),
            _outputs_codegen(True, False))


@intrinsic
def vstore_outputs_masked(typingctx, counts, total, scale, bias, index, out, out_offset, count):
    """`vstore_outputs` on the first `count` (< 8) lanes: a partial block's last outputs."""
    if not _outputs_typed(counts, scale, bias, out) or not isinstance(count, types.Integer):
        return None
    return types.none(counts, total, scale, bias, index, out, out_offset, count), _outputs_codegen(False, True)


@intrinsic
def vstore_outputs_residual_masked(typingctx, counts, total, scale, bias, index, out, out_offset, residual,
                                   residual_offset, count):
    """`vstore_outputs_residual` on the first `count` (< 8) lanes."""
    if not (_outputs_typed(counts, scale, bias, out, residual) and isinstance(residual_offset, types.Integer)
            and isinstance(count, types.Integer)):
        return None
    return (types.none(counts, total, scale, bias, index, out, out_offset, residual, residual_offset, count),
            _outputs_codegen(True, True))


def _split_codegen(residual: bool):
    """A split vector's outputs: lanes 0-3 are pixel a's outputs index.. index+count-1, lanes 4-7
    pixel b's same outputs. Both halves take the same scale and bias (4 float64s read once, on
    `count` lanes), then each half goes to its pixel: plain 4-lane stores when count is 4, masked
    ones below. Lane by lane the same operations as `_finish`, so bit for bit the scalar formula."""

    def codegen(context, builder, sig, args):
        counts, total, scale, bias, index, out, at_a, at_b = args[:8]
        count, count_type = args[-1], sig.args[-1]
        mask = _half_mask(context, builder, count, count_type)
        full = builder.icmp_signed("==", context.cast(builder, count, count_type, types.int64),
                                   ir.Constant(_I64, 4))
        dot_f = _dot(context, builder, counts, total, sig.args[1])
        both = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0, 1, 2, 3, 0, 1, 2, 3])
        halves = (ir.Constant(ir.VectorType(ir.IntType(32), 4), [0, 1, 2, 3]),
                  ir.Constant(ir.VectorType(ir.IntType(32), 4), [4, 5, 6, 7]))

        def emit(live_mask):
            scales = _load_vector(context, builder, sig.args[2], scale, sig.args[4], index, _F64, live_mask, 4)
            biases = _load_vector(context, builder, sig.args[3], bias, sig.args[4], index, _F64, live_mask, 4)
            scales = builder.shuffle_vector(scales, scales, both)
            biases = builder.shuffle_vector(biases, biases, both)
            value = builder.fptrunc(builder.fadd(builder.fmul(scales, dot_f), biases), ir.VectorType(_F32, LANES))
            pixels = ((at_a, sig.args[6], 9), (at_b, sig.args[7], 10))  # with the residual offsets
            for (at, at_type, residual_arg), lanes in zip(pixels, halves):
                half = builder.shuffle_vector(value, value, lanes)
                if residual:
                    half = builder.fadd(half, _load_vector(context, builder, sig.args[8], args[8],
                                                           sig.args[residual_arg], args[residual_arg], _F32,
                                                           live_mask, 4))
                _store_vector(context, builder, half, sig.args[5], out, at_type, at, live_mask)

        with builder.if_else(full, likely=True) as (whole, partial):
            with whole:  # the usual tail of 4 (widths 12, 28, 44, ...): no masks
                emit(None)
            with partial:
                emit(mask)
        return context.get_dummy_value()

    return codegen


@intrinsic
def vstore_outputs_split(typingctx, counts, total, scale, bias, index, out, at_a, at_b, count):
    """A split vector (`vxpa2`) stored: out[at_a : +count] from lanes 0.., out[at_b : +count] from
    lanes 4.., each float32(scale[index + i] * (total - 2 * counts[lane]) + bias[index + i]); count in 1..4."""
    if not _outputs_typed(counts, scale, bias, out) or not all(
            isinstance(value, types.Integer) for value in (index, at_a, at_b, count)):
        return None
    return types.none(counts, total, scale, bias, index, out, at_a, at_b, count), _split_codegen(False)


@intrinsic
def vstore_outputs_residual_split(typingctx, counts, total, scale, bias, index, out, at_a, at_b, residual,
                                  residual_a, residual_b, count):
    """`vstore_outputs_split` plus residual[residual_a : +count] and residual[residual_b : +count]."""
    if not _outputs_typed(counts, scale, bias, out, residual) or not all(
            isinstance(value, types.Integer) for value in (index, at_a, at_b, residual_a, residual_b, count)):
        return None
    return (types.none(counts, total, scale, bias, index, out, at_a, at_b, residual, residual_a, residual_b, count),
            _split_codegen(True))


def _sign_bits_codegen(masked: bool):
    def codegen(context, builder, sig, args):
        mask = _lane_mask(context, builder, args[4], sig.args[4]) if masked else None
        values = _load_vector(context, builder, sig.args[0], args[0], sig.args[1], args[1], _F32, mask)
        shifts = _load_vector(context, builder, sig.args[2], args[2], sig.args[3], args[3], _F32, mask)
        signs = builder.fcmp_ordered(">=", builder.fadd(values, shifts), ir.Constant(ir.VectorType(_F32, LANES), None))
        if masked:  # the lanes left out read 0 + 0 >= 0: clear their bits
            signs = builder.and_(signs, mask)
        return builder.zext(builder.bitcast(signs, ir.IntType(LANES)), _I64)

    return codegen


@intrinsic
def vsign_bits(typingctx, out, out_offset, shift, index):
    """The 8 bits (out[out_offset + i] + shift[index + i] >= 0) as a uint64 in 0..255: the next
    binary conv's packed input, thresholded exactly as `pack_activations` does (float32 add)."""
    if not (_is_base(out, types.float32) and _is_base(shift, types.float32)):
        return None
    return types.uint64(out, out_offset, shift, index), _sign_bits_codegen(False)


@intrinsic
def vsign_bits_masked(typingctx, out, out_offset, shift, index, count):
    """`vsign_bits` of the first `count` (< 8) lanes; the higher bits are 0 and nothing past them is read."""
    if not (_is_base(out, types.float32) and _is_base(shift, types.float32) and isinstance(count, types.Integer)):
        return None
    return types.uint64(out, out_offset, shift, index, count), _sign_bits_codegen(True)


# ---- AVX2 only: nibble-table popcount with byte accumulators ------------------------------------
# Without VPOPCNTQ a vector popcount is a 4-bit table lookup (pshufb) on the low and the high
# nibble of every byte, then a horizontal byte sum (psadbw) into the 64-bit lanes. Two savings
# over LLVM's generic lowering of ctpop: the nibbles of the weights are split once when the
# weights are prepared and those of an input word once per word (not once per output vector),
# since (a ^ w) & 0x0f.. = (a & 0x0f..) ^ (w & 0x0f..); and the byte counts are summed in byte
# lanes over up to 31 words (8 per word at most, 248 < 256) before one psadbw. These use x86
# intrinsics, so kernels call them only when `isa.isa_path() == "avx2"`.

_BYTES32 = ir.VectorType(ir.IntType(8), 32)
_QUADS4 = ir.VectorType(_I64, 4)
_NIBBLE_COUNTS = ir.Constant(_BYTES32, [bin(i).count("1") for i in range(16)] * 2)


def _halves(builder, vector):
    low = builder.shuffle_vector(vector, vector, ir.Constant(ir.VectorType(ir.IntType(32), 4), [0, 1, 2, 3]))
    high = builder.shuffle_vector(vector, vector, ir.Constant(ir.VectorType(ir.IntType(32), 4), [4, 5, 6, 7]))
    return builder.bitcast(low, _BYTES32), builder.bitcast(high, _BYTES32)


def _join(builder, low, high):
    return builder.shuffle_vector(builder.bitcast(low, _QUADS4), builder.bitcast(high, _QUADS4),
                                  ir.Constant(ir.VectorType(ir.IntType(32), 8), list(range(8))))


def _nibble_add(builder, accumulator, nibbles_low, nibbles_high):
    """Byte lanes: accumulator + table[nibbles_low] + table[nibbles_high] (AVX2 vpshufb), where the
    nibbles are already the XOR of the input's and the weights' (low and high halves of each byte)."""
    shuffle = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_BYTES32, [_BYTES32, _BYTES32]),
                                             "llvm.x86.avx2.pshuf.b")
    total_low, total_high = _halves(builder, accumulator)
    for nibbles in (nibbles_low, nibbles_high):
        low, high = _halves(builder, nibbles)
        total_low = builder.add(total_low, builder.call(shuffle, [_NIBBLE_COUNTS, low]))
        total_high = builder.add(total_high, builder.call(shuffle, [_NIBBLE_COUNTS, high]))
    return _join(builder, total_low, total_high)


@intrinsic
def vnibble_xpa(typingctx, accumulator, word_low, word_high, weights_low, weights_high):
    """Byte lanes: accumulator + table[broadcast(word_low) ^ weights_low] + table[... high]: the
    popcount of (word ^ weights) per byte, from pre-split nibbles (AVX2 vpshufb)."""
    if accumulator != u64x8 or weights_low != u64x8 or weights_high != u64x8:
        return None

    def codegen(context, builder, sig, args):
        word = lambda i: _broadcast(builder, context.cast(builder, args[i], sig.args[i], types.uint64))  # noqa: E731
        return _nibble_add(builder, args[0], builder.xor(word(1), args[3]), builder.xor(word(2), args[4]))

    return u64x8(accumulator, word_low, word_high, weights_low, weights_high), codegen


@intrinsic
def vnibble_xpa2(typingctx, accumulator, a_low, a_high, b_low, b_high, weights_low, weights_high):
    """`vnibble_xpa` for a split vector (see `vxpa2`): pixel a's nibbles in lanes 0-3, b's in 4-7."""
    if accumulator != u64x8 or weights_low != u64x8 or weights_high != u64x8:
        return None

    def codegen(context, builder, sig, args):
        word = lambda i: context.cast(builder, args[i], sig.args[i], types.uint64)  # noqa: E731
        return _nibble_add(builder, args[0], builder.xor(_pair_broadcast(builder, word(1), word(3)), args[5]),
                           builder.xor(_pair_broadcast(builder, word(2), word(4)), args[6]))

    return u64x8(accumulator, a_low, a_high, b_low, b_high, weights_low, weights_high), codegen


@intrinsic
def vbyte_sum(typingctx, accumulator):
    """Sum of the 8 byte lanes of every 64-bit lane (AVX2 vpsadbw against zero)."""
    if accumulator != u64x8:
        return None

    def codegen(context, builder, sig, args):
        sad = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_QUADS4, [_BYTES32, _BYTES32]),
                                             "llvm.x86.avx2.psad.bw")
        zero = ir.Constant(_BYTES32, None)
        low, high = _halves(builder, args[0])
        return builder.shuffle_vector(builder.call(sad, [low, zero]), builder.call(sad, [high, zero]),
                                      ir.Constant(ir.VectorType(ir.IntType(32), 8), list(range(8))))

    return u64x8(accumulator), codegen


@intrinsic
def vadd(typingctx, left, right):
    if left != u64x8 or right != u64x8:
        return None

    def codegen(context, builder, sig, args):
        return builder.add(args[0], args[1])

    return u64x8(left, right), codegen


__all__ = ["LANES", "load_word", "store_word", "u64x8", "vadd", "vload", "vbyte_sum", "vnibble_xpa", "vnibble_xpa2",
           "vsign_bits", "vsign_bits_masked", "vstore_outputs", "vstore_outputs_masked", "vstore_outputs_residual",
           "vstore_outputs_residual_masked", "vstore_outputs_residual_split", "vstore_outputs_split", "vxpa", "vxpa2",
           "vzero"]
