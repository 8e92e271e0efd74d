"""Native executors for the search space's quantized convs and linears (1/2/4/8-bit on both sides).

torch runs these layers as an fp32 *simulation* (quantize to float levels, then an fp32 conv),
which is slower than a plain float conv. Here each quantized operand is written exactly as a sum
of integer-valued planes times float coefficients:

- 1-bit (SignSTE, ApproxSign, RSign; SignWeights, ScaledSignWeights): one +-1 plane,
  coefficient 1 (activations), 1 or mean|w| per output channel (weights);
- 2-bit symmetric x in {-1, -a, a, 1} (TwoBitSymmetric, TwoBitWeights): x = c1*s + c2*t with
  s = sign(x), t = s at the outer levels and -s at the inner ones, c1 = (1+a)/2, c2 = (1-a)/2
  (times max|w| per output channel for weights): two +-1 planes;
- 4/8-bit (LsqActivations, UniformWeights): one int8 plane of the integer levels times the step.

So conv(x, w) = sum over plane pairs of coef_x * coef_w[o] * IntConv(plane_x, plane_w), each
IntConv exact integer arithmetic, combined in float64 with the fused epilogue (folded BatchNorm
gain/shift, residual, ReLU/ReLU6) and rounded to float32 once:

- "popcount": both sides +-1 planes (W1/W2 x A1/A2), ungrouped: packed XNOR-popcount over
  64-bit words; one fused kernel gathers each pixel's im2col words, runs every plane pair
  through a 4-row AVX-512 popcount loop and applies the combination and epilogue
  (`int_kernels.popcount_conv`);
- "int8-gemm": an int8 plane involved (W4/W8 or A4/A8, mixed with anything), ungrouped: im2col
  and one GEMM, input planes stacked along M and weight planes along N, so one call computes every
  pair; then a float64 combine. Where the CPU has VNNI the GEMM is torch._int_mm (int8 operands,
  int32 accumulation; ~5x an fp32 conv of the same shape on a Xeon with AVX-512 VNNI). Without
  VNNI torch._int_mm falls back to code 12-30x slower than an fp32 GEMM (Zen 3 EPYC, AVX2), so
  the same integer planes go through torch's float GEMM instead (`isa.int8_gemm_kind`): float32
  while every partial sum is an integer below 2^24, so every product and sum is exact in any
  order, else float64 (exact far past any depth built here). The results are the
  same integers either way; the int8 weights stay the layer's (and a packed file's) numbers.
- "direct": grouped and depthwise convs (any bits) and linears: one fused numba kernel
  (quantize, direct conv, combine, epilogue). Its float32 arithmetic on the integer planes is
  exact while k*k*Cin/groups * max|x| * max|w| < 2^24 (every partial sum an integer below 2^24),
  which holds for every depthwise conv and for 8-bit classifiers under 1032 features; past it
  grouped convs run an int8 x int8 -> int32 kernel (`float_exact` False) and linears the int8
  GEMM. Per-group GEMMs would be too small to pay off.

The activation quantization reproduces torch's float32 expressions exactly (same comparisons,
same float32 division, round half to even), so the integer planes are exactly torch's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import int_kernels as ik
from .compiler import NotCompilable, fold_batchnorm
from .isa import int8_gemm_kind
from .kernels import pack_weight_signs, packed_words

_NO_RESIDUAL = np.zeros((0, 0, 0), dtype=np.float32)
_CLAMPS = {None: ik.NO_CLAMP, "relu": ik.RELU, "relu6": ik.RELU6}



def _float32_exact(depth: int, largest_x: int, largest_w: int) -> bool:
    """Whether float32 sums of `depth` products of integer levels up to these magnitudes are exact:
    every partial sum is then an integer below 2^24, exact in any order."""
    return depth * largest_x * largest_w < 2 ** 24


@dataclass
class ActivationPlanes:
    """How an input quantizer splits into planes: its kernel code, parameters and coefficients."""

    mode: int                 # int_kernels.SIGN / TWO_BIT / LSQ
    coefs: np.ndarray         # (P,) float64
    threshold: np.ndarray     # (C,) float32 (SIGN: RSign's threshold, else zeros)
    outer_at: np.float32      # TWO_BIT: |x| >= (1 + a) / 2 is an outer level
    level: np.float32         # TWO_BIT: a
    step: np.float32          # LSQ
    qn: int
    qp: int

    @property
    def binary(self) -> bool:
        return self.mode != ik.LSQ

    @property
    def count(self) -> int:
        return len(self.coefs)


def activation_planes(quantizer: nn.Module, channels: int) -> ActivationPlanes:
    from bitnas.spaces.quantizers import ApproxSign, LsqActivations, RSign, SignSTE, TwoBitSymmetric

    zeros = np.zeros(channels, np.float32)
    with torch.no_grad():
        if isinstance(quantizer, RSign):
            threshold = quantizer.threshold.detach().float().reshape(-1).numpy()
            if threshold.size not in (1, channels):
                raise NotCompilable(f"RSign has {threshold.size} thresholds for {channels} channels")
            return ActivationPlanes(ik.SIGN, np.ones(1), np.ascontiguousarray(np.broadcast_to(threshold, channels)),
                                    np.float32(0), np.float32(0), np.float32(1), 0, 0)
        if type(quantizer) in (SignSTE, ApproxSign):
            return ActivationPlanes(ik.SIGN, np.ones(1), zeros, np.float32(0), np.float32(0), np.float32(1), 0, 0)
        if type(quantizer) is TwoBitSymmetric:
            inner = quantizer.level().detach().float()
            outer_at = ((1 + inner) / 2).numpy()  # the float32 expression `_two_bit` compares with
            a = float(inner)
            return ActivationPlanes(ik.TWO_BIT, np.array([(1 + a) / 2, (1 - a) / 2]), zeros,
                                    np.float32(outer_at), np.float32(a), np.float32(1), 0, 0)
        if type(quantizer) is LsqActivations:
            step = quantizer.step.detach().float().abs().clamp_min(1e-6)  # the forward's step, float32
            return ActivationPlanes(ik.LSQ, np.array([float(step)]), zeros, np.float32(0), np.float32(0),
                                    np.float32(step.numpy()), int(quantizer.qn), int(quantizer.qp))
    raise NotCompilable(f"input quantizer {type(quantizer).__name__} has no integer form")


def weight_planes(quantizer: nn.Module, weight: torch.Tensor) -> tuple[np.ndarray, np.ndarray, bool]:
    """(planes (Q, Cout, Cin/g, k, k) int8, coefs (Q, Cout) float64, binary) with
    sum_q coefs[q, o] * planes[q, o] = the quantizer's output (exactly, up to float32 rounding)."""
    from bitnas.spaces.quantizers import ScaledSignWeights, SignWeights, TwoBitWeights, UniformWeights

    w = weight.detach().float()
    out_channels = w.shape[0]
    with torch.no_grad():
        sign = torch.where(w >= 0, 1, -1).to(torch.int8)
        if type(quantizer) is SignWeights:
            return sign.numpy()[None], np.ones((1, out_channels)), True
        if type(quantizer) is ScaledSignWeights:
            # The scale exactly as torch computes it: |quantized| is the scale everywhere.
            scale = quantizer(w).abs().amax(dim=(1, 2, 3)).double().numpy()
            return sign.numpy()[None], scale[None], True
        if type(quantizer) is TwoBitWeights:
            scale = w.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)
            inner = quantizer.level().detach().float()
            normalised = w / scale  # the same float32 expressions as TwoBitWeights.forward
            outer = normalised.abs() >= (1 + inner) / 2
            s = torch.where(normalised >= 0, 1, -1).to(torch.int8)
            t = torch.where(outer, s, -s)
            a = float(inner)
            scale64 = scale.reshape(-1).double().numpy()
            return (torch.stack([s, t]).numpy(), np.stack([scale64 * (1 + a) / 2, scale64 * (1 - a) / 2]), True)
        if type(quantizer) is UniformWeights:
            step = (w.abs().amax(dim=(1, 2, 3), keepdim=True) / quantizer.qp).clamp_min(1e-8)
            levels = torch.round(w / step)
            if levels.abs().max() > 127:
                raise NotCompilable("uniform weight levels do not fit int8")
            return levels.to(torch.int8).numpy()[None], step.reshape(-1).double().numpy()[None], False
    raise NotCompilable(f"kernel quantizer {type(quantizer).__name__} has no integer form")


class NativeQuantConv:
    """A quantized conv (QuantConv2d, both operands quantized) run natively, batch 1, channel-last.

    `NativeQuantConv.from_module(conv, gain=None, shift=None, batchnorm=None, clamp=None)`; then
    `layer(x, residual=None)` with x (H, W, Cin) float32 returns (Ho, Wo, Cout) float32:
        clamp(float32((conv(x) [+ conv.bias]) * gain + shift) [+ residual])
    gain/shift per output channel (a folded BatchNorm: pass `batchnorm=` or `fold_batchnorm`'s
    pair), residual (Ho, Wo, Cout) float32, clamp None / "relu" / "relu6".
    `path` names the kernel: "popcount", "int8-gemm" or "direct".
    """

    def __init__(self, *, acts: ActivationPlanes, planes: np.ndarray, coefs: np.ndarray, binary_weights: bool,
                 in_channels: int, out_channels: int, kernel: int, stride: int, padding: int, groups: int,
                 bias: np.ndarray | None, gain: np.ndarray | None, shift: np.ndarray | None, clamp: str | None,
                 direct_hint: bool = False):
        self.acts = acts
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel, self.stride, self.padding, self.groups = kernel, stride, padding, groups
        if clamp not in _CLAMPS:
            raise ValueError(f"clamp must be one of {list(_CLAMPS)}, got {clamp!r}")
        self.clamp = clamp
        gain = np.ones(out_channels) if gain is None else np.asarray(gain, np.float64).reshape(out_channels)
        shift = np.zeros(out_channels) if shift is None else np.asarray(shift, np.float64).reshape(out_channels)
        bias = np.zeros(out_channels) if bias is None else np.asarray(bias, np.float64)
        # (conv + bias) * gain + shift: the bias folds into the shift, the gain into each pair's coefficient.
        self.shift = np.ascontiguousarray(bias * gain + shift)
        self.coef = np.ascontiguousarray(acts.coefs[:, None, None] * coefs[None, :, :] * gain[None, None, :])
        self.weight_planes_int8 = planes  # (Q, Cout, Cin/g, k, k), kept for tests and inspection
        n_w = planes.shape[0]
        positions = kernel * kernel
        depth = positions * in_channels // groups
        # The direct kernel's float32 arithmetic is exact while every partial sum stays below 2^24.
        largest_x = self._largest_input()
        self.float_exact = _float32_exact(depth, largest_x, int(np.abs(planes).max(initial=1)))
        # A linear (one output pixel) is all call overhead in the GEMM path; the fused direct
        # kernel is one call. (The stem, Cin 1 or 3, measured faster through im2col + GEMM.)
        self.packed_base = np.float64(0)  # > 0: depthwise 2-bit weight planes packed into one
        if groups > 1 or (direct_hint and self.float_exact):
            self.path = "direct"
            self.weights = np.ascontiguousarray(
                planes.transpose(0, 3, 4, 2, 1).reshape(n_w, positions, in_channels // groups, out_channels))
            if self.float_exact:
                self.weights = self.weights.astype(np.float32)
            taps = positions * largest_x  # bound on |sum of x * (+-1 weight)| over one output
            base = 2 * taps + 1
            if self.float_exact and groups == in_channels == out_channels and binary_weights and n_w == 2 \
                    and (base + 1) * taps < 2 ** 24:
                # 2-bit depthwise weights: S + base*T in one plane (see int_kernels.depthwise_fused)
                self.packed_base = np.float64(base)
                self.weights = np.ascontiguousarray(self.weights[:1] + base * self.weights[1:]).astype(np.float32)
        elif acts.binary and binary_weights:
            self.path = "popcount"
            words = packed_words(in_channels)
            packed = [pack_weight_signs(plane > 0).reshape(positions * words, out_channels) for plane in planes]
            self.weights = np.ascontiguousarray(np.concatenate(packed, axis=1))  # (k*k*Cw, Q*Cout)
            # sum of each position's +-1 weights, for the border correction (see int_kernels.popcount_conv)
            self.border_sums = np.ascontiguousarray(
                planes.astype(np.int64).sum(axis=2).transpose(2, 3, 0, 1).reshape(positions, n_w * out_channels))
            self.k_cols = positions * words
            total_bits = positions * in_channels
            self.popcount_base = self.shift + total_bits * self.coef.sum(axis=(0, 1))
        else:
            self.path = "int8-gemm"
            depth = positions * in_channels
            matrix = planes.transpose(3, 4, 2, 0, 1).reshape(depth, n_w * out_channels)  # K in (ky, kx, c) order
            self.weights = torch.from_numpy(np.ascontiguousarray(matrix))
            self.k_cols = depth
        if self.path != "popcount":
            self.border_sums = np.zeros((positions, 1), np.int64)
        self._buffers: dict = {}
        # Decided when the layer is built, so that two layers built under different settings can be
        # timed side by side (benchmarks/int8_gemm.py); neither is stored in a packed file.
        self.int8_gemm = int8_gemm_kind()
        self._gemm_matrix: tuple | None = None  # (weights it was made from, the matrix the GEMM takes)

    # ---- construction ----------------------------------------------------------------------

    @classmethod
    def from_module(cls, conv: nn.Module, *, batchnorm: nn.Module | None = None, gain=None, shift=None,
                    clamp: str | None = None, _direct_hint: bool = False) -> "NativeQuantConv":
        from bitnas.spaces.layers import QuantConv2d

        if not isinstance(conv, QuantConv2d):
            raise NotCompilable(f"{type(conv).__name__} is not a QuantConv2d")
        kernel, stride, padding = conv.kernel_size[0], conv.stride[0], conv.padding
        if isinstance(padding, str):
            raise NotCompilable(f"padding={padding!r} is not numeric")
        padding = padding[0]
        if (conv.kernel_size[1], conv.stride[1], conv.padding[1]) != (kernel, stride, padding) \
                or conv.dilation != (1, 1) or conv.padding_mode != "zeros":
            raise NotCompilable("only square, undilated, zero-padded quantized convs run natively")
        if conv.input_bits == 32 or conv.weight_bits == 32:
            raise NotCompilable("one side is full precision: a genuine fp32 layer")
        if batchnorm is not None:
            if gain is not None or shift is not None:
                raise ValueError("pass batchnorm or gain/shift, not both")
            gain, shift = fold_batchnorm(batchnorm)
        acts = activation_planes(conv.input_quantizer, conv.in_channels)
        planes, coefs, binary = weight_planes(conv.kernel_quantizer, conv.weight)
        bias = None if conv.bias is None else conv.bias.detach().double().numpy()
        return cls(acts=acts, planes=planes, coefs=coefs, binary_weights=binary, in_channels=conv.in_channels,
                   out_channels=conv.out_channels, kernel=kernel, stride=stride, padding=padding, groups=conv.groups,
                   bias=bias, gain=gain, shift=shift, clamp=clamp, direct_hint=_direct_hint)

    # ---- running ---------------------------------------------------------------------------

    def output_size(self, size: int) -> int:
        return (size + 2 * self.padding - self.kernel) // self.stride + 1

    def _buffer(self, name: str, shape: tuple, dtype) -> np.ndarray:
        key = (name, shape, np.dtype(dtype))  # a GEMM's rows and results change type with its kind
        buffer = self._buffers.get(key)
        if buffer is None:  # allocated once per input size, as the packed engine does
            buffer = self._buffers[key] = np.zeros(shape, dtype=dtype)
        return buffer

    def _check(self, x: np.ndarray) -> np.ndarray:
        # float32 only: converting another dtype here would quantize a different value than torch.
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 3 or x.shape[2] != self.in_channels:
            raise ValueError(f"expected an (H, W, {self.in_channels}) float32 array, got "
                             f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}")
        return np.ascontiguousarray(x)

    def _int8_planes(self, x: np.ndarray) -> np.ndarray:
        a = self.acts
        planes = self._buffer("planes", (a.count, *x.shape), np.int8)
        ik.quantize_int8(x, a.mode, a.threshold, a.outer_at, a.step, a.qn, a.qp, planes)
        return planes

    def _run(self, x: np.ndarray, residual: np.ndarray | None, want_pairs: bool) -> tuple[np.ndarray, np.ndarray]:
        x = self._check(x)
        a = self.acts
        height, width, _ = x.shape
        out_h, out_w = self.output_size(height), self.output_size(width)
        m_rows, columns = out_h * out_w, self.coef.shape[1] * self.out_channels
        out = np.empty((out_h, out_w, self.out_channels), np.float32)
        if residual is None:
            residual_array, has_residual = _NO_RESIDUAL, False
        else:
            if residual.shape != out.shape or residual.dtype != np.float32:
                raise ValueError(f"residual must be {out.shape} float32, got {residual.dtype} {residual.shape}")
            residual_array, has_residual = np.ascontiguousarray(residual), True
        clamp = _CLAMPS[self.clamp]
        if self.path == "popcount":
            packed = self._buffer("packed", (a.count, height, width, packed_words(self.in_channels)), np.uint64)
            ik.pack_signs(x, a.mode, a.threshold, a.outer_at, packed)
            pairs = np.empty((a.count, m_rows, columns) if want_pairs else (0, 0, 0), np.int32)
            ik.popcount_conv(packed, self.weights, self.kernel, self.stride, self.padding, self.border_sums,
                             self.coef, self.popcount_base, residual_array, has_residual, clamp, want_pairs, pairs, out)
            return out, pairs
        if self.path == "direct" and self.float_exact:
            planes = self._buffer("float-planes", (a.count, *x.shape), np.float32)
            pairs = np.empty((a.count, m_rows, columns) if want_pairs else (0, 0, 0), np.int32)
            if self.groups == self.in_channels == self.out_channels:
                ik.depthwise_fused(x, a.mode, a.threshold, a.outer_at, a.step, a.qn, a.qp, planes, self.weights,
                                   self.packed_base, self.kernel, self.stride, self.padding, self.coef, self.shift,
                                   residual_array, has_residual, clamp, want_pairs, pairs, out)
            else:
                ik.direct_fused(x, a.mode, a.threshold, a.outer_at, a.step, a.qn, a.qp, planes, self.weights,
                                self.groups, self.kernel, self.stride, self.padding, self.coef, self.shift,
                                residual_array, has_residual, clamp, want_pairs, pairs, out)
            return out, pairs
        planes = self._int8_planes(x)
        if self.path == "direct":
            pairs = self._buffer("pairs", (a.count, m_rows, columns), np.int32)
            ik.direct_conv(planes, self.weights, self.groups, self.kernel, self.stride, self.padding, pairs)
        else:
            matrix = self.gemm_matrix()
            # the rows in the matrix's type (im2col converts each int8 level as it copies it), and the
            # GEMM's exact integer results in the type it writes: int32, float32 or float64
            kind = matrix.numpy().dtype
            rows = self._buffer("rows", (a.count, m_rows, self.k_cols), kind)
            pairs = self._buffer("pairs", (a.count, m_rows, columns), np.int32 if kind == np.int8 else kind)
            ik.im2col(planes, self.kernel, self.stride, self.padding, rows)
            gemm = torch._int_mm if kind == np.int8 else torch.mm
            gemm(torch.from_numpy(rows).view(a.count * m_rows, self.k_cols), matrix,
                 out=torch.from_numpy(pairs).view(a.count * m_rows, columns))
        ik.combine(pairs, self.coef, self.shift, residual_array, has_residual, clamp, out)
        return out, pairs

    def _largest_input(self) -> int:
        """The largest |level| of an input plane: 1 for +-1 planes, else the quantizer's range."""
        return 1 if self.acts.binary else max(-self.acts.qn, self.acts.qp)

    def gemm_matrix(self) -> torch.Tensor:
        """The int8-gemm path's right-hand side (K, Q*Cout) as this layer's GEMM takes it: the int8
        weight planes for torch._int_mm, else the same integers as float32 where every partial sum
        stays below 2^24 (so float32 is exact), or float64. Made once, and again if the weights were
        replaced (a packed file's are set after the layer is built, so the bound is taken on them)."""
        if self._gemm_matrix is None or self._gemm_matrix[0] is not self.weights:
            if self.int8_gemm == "int8":
                matrix = self.weights
            else:
                largest_w = int(self.weights.to(torch.int32).abs().max()) if self.weights.numel() else 1
                exact = _float32_exact(self.k_cols, self._largest_input(), largest_w)
                matrix = self.weights.to(torch.float32 if exact else torch.float64).contiguous()
            self._gemm_matrix = (self.weights, matrix)
        return self._gemm_matrix[1]

    def __call__(self, x: np.ndarray, residual: np.ndarray | None = None) -> np.ndarray:
        return self._run(x, residual, False)[0]

    def pairs(self, x: np.ndarray) -> np.ndarray:
        """The integer results (P, Ho*Wo, Q*Cout) int32: exact pair convolutions, or for the
        popcount path the XOR popcounts that `integer_terms` turns into +-1 dots."""
        return self._run(x, None, True)[1].astype(np.int32)  # a float GEMM's are exact integers

    # ---- inspection (tests) ----------------------------------------------------------------

    def integer_terms(self, x: np.ndarray) -> np.ndarray:
        """Exact integer convs of every (input plane i, weight plane j): (P, Q, Ho, Wo, Cout) int64."""
        height, width = x.shape[:2]
        out_h, out_w = self.output_size(height), self.output_size(width)
        pairs = self.pairs(x).astype(np.int64)
        n_in, n_w = self.coef.shape[:2]
        terms = pairs.reshape(n_in, out_h, out_w, n_w, self.out_channels).transpose(0, 3, 1, 2, 4).copy()
        if self.path == "popcount":
            terms = self.kernel * self.kernel * self.in_channels - 2 * terms
            for oh in range(out_h):
                for ow in range(out_w):
                    for ky in range(self.kernel):
                        for kx in range(self.kernel):
                            ih = oh * self.stride - self.padding + ky
                            iw = ow * self.stride - self.padding + kx
                            if not (0 <= ih < height and 0 <= iw < width):
                                sums = self.border_sums[ky * self.kernel + kx].reshape(n_w, self.out_channels)
                                terms[:, :, oh, ow, :] += sums[None]
        return terms

    def input_planes(self, x: np.ndarray) -> np.ndarray:
        """The input's integer planes (P, H, W, C) int8, as the kernels see them."""
        x = self._check(x)
        return self._int8_planes(x).copy()

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """The quantized input as torch's quantizer outputs it, (H, W, C) float32, from the planes."""
        planes = self.input_planes(x)
        a = self.acts
        if a.mode == ik.SIGN:
            return planes[0].astype(np.float32)
        if a.mode == ik.TWO_BIT:
            s = planes[0].astype(np.float32)
            return np.where(planes[0] == planes[1], s, s * a.level).astype(np.float32)
        return (planes[0].astype(np.float32) * a.step).astype(np.float32)


class NativeQuantLinear:
    """A quantized linear (QuantLinear; the 8-bit classifier) run natively: x (F,) float32 -> (N,)
    float32 = clamp(float32((linear(x)) * gain + shift)). A 1x1 conv on a 1x1 image underneath."""

    def __init__(self, conv: NativeQuantConv):
        self.conv = conv

    @classmethod
    def from_module(cls, linear: nn.Module, *, batchnorm: nn.Module | None = None, gain=None, shift=None,
                    clamp: str | None = None) -> "NativeQuantLinear":
        from bitnas.spaces.layers import QuantConv2d, QuantLinear

        if not isinstance(linear, QuantLinear):
            raise NotCompilable(f"{type(linear).__name__} is not a QuantLinear")
        as_conv = QuantConv2d(linear.in_features, linear.out_features, 1, bias=linear.bias is not None,
                              input_quantizer=linear.input_quantizer, kernel_quantizer=linear.kernel_quantizer)
        with torch.no_grad():
            as_conv.weight.copy_(linear.weight.detach()[:, :, None, None])
            if linear.bias is not None:
                as_conv.bias.copy_(linear.bias.detach())
        return cls(NativeQuantConv.from_module(as_conv, batchnorm=batchnorm, gain=gain, shift=shift, clamp=clamp,
                                               _direct_hint=True))

    @property
    def path(self) -> str:
        return self.conv.path

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.conv(np.ascontiguousarray(x, dtype=np.float32).reshape(1, 1, -1)).reshape(-1)


__all__ = ["ActivationPlanes", "NativeQuantConv", "NativeQuantLinear", "activation_planes", "fold_batchnorm",
           "weight_planes"]
