"""Quantizers: tiny named objects that map a tensor to its low-bit form in the forward pass.

Each declares its `bits`, which the cost counter reads. The straight-through estimators are
written as `_straight_through(surrogate, quantized)`: the forward value is exactly the quantized
one, the gradient is the surrogate's. That plain form is what export runs, so models export to ONNX
as plain operators. A pass that records no gradient (validation, BatchNorm recalibration) computes
the 1-bit quantizers' values alone, the same values. While training with gradients on, they compute
the same values and the same gradients, bit for bit, through small autograd functions instead
(`_ClippedSign`, `_SignThrough`, and for CPU activations fused_sign.py's one-pass kernels): the
plain form makes about eight full passes over an activation per sign and its gradient, with
torch.where among them, they make four, the kernels two (`benchmarks/training_speed.py` measures
the difference, tests/test_fused_quantizers.py checks that training is unchanged).

Two kinds: activation quantizers (`SignSTE`, `ApproxSign`, `RSign`, `TwoBitSymmetric`,
`LsqActivations`) and weight quantizers (`ScaledSignWeights`, `SignWeights`, `TwoBitWeights`,
`UniformWeights`); `FullPrecision` is both. `activation_quantizer(bits)` and
`weight_quantizer(bits)` pick the default of each kind for a bit width.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Callable

import torch
from torch import nn

from .catalog import BIT_WIDTHS  # noqa: E402,F401 - the widths every quantizer family covers
from . import fused_sign
from .fast_path import FastPathSwitch


def _binary(x: torch.Tensor) -> torch.Tensor:
    """+1 where x >= 0 (-0.0 included), -1 elsewhere: torch.sign maps 0 to 0, which is not a binary
    value; 0 goes to +1 as in the papers' kernels. The value only (never differentiated)."""
    if torch.jit.is_tracing() or not _FUSED.on:  # the ONNX exporter: plain operators it can write down
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))
    # torch.where and boolean tensors are the slow operators here (about 4 ms against 0.1 ms for a
    # comparison written into a float tensor, on a 32 x 32 x 28 x 28 activation): the same values in
    # three cheap passes.
    return torch.ge(x.detach(), 0.0, out=torch.empty_like(x)).mul_(2.0).sub_(1.0)


def _straight_through(surrogate: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
    # `surrogate - surrogate.detach()` is exactly zero in the forward pass, so the value is exactly
    # `quantized` (the textbook `s + (q - s).detach()` is off by rounding, which a bit-exact engine
    # would notice), while the gradient flows through the surrogate.
    return (surrogate - surrogate.detach()) + quantized.detach()


# Whether training takes the fused autograd functions below (and `_binary` its cheap passes);
# `plain_autograd()` turns both off, for the benchmark that measures what they save and the test
# that checks they change nothing.
_FUSED = FastPathSwitch()


def plain_autograd() -> contextlib.AbstractContextManager:
    """Within this block the 1-bit quantizers train through the plain straight-through form and the
    plain sign: the ONNX-traceable operators throughout, as before the fused functions existed."""
    return _FUSED.off()


def _fused(module: nn.Module) -> bool:
    # Only a training pass that records gradients; the ONNX tracer (eval mode) takes the plain
    # straight-through form.
    return _FUSED.on and module.training and torch.is_grad_enabled()


def _value_only() -> bool:
    """No gradient is recorded (validation, BatchNorm recalibration, latency runs in PyTorch): the
    straight-through form's surrogate, clamp, subtract and add, is then three full passes over the
    activation for a value that is exactly `_binary`'s. Skipping them (with RPReLU's forward loop,
    fused_rprelu.py) made one-batch recalibration on 512 images of a 1.5x-wide ReActNet 1.7x faster
    (benchmarks/validation_speed.py). Never while the ONNX exporter traces."""
    return _FUSED.on and not torch.is_grad_enabled() and not torch.jit.is_tracing()


def _sign_values(x: torch.Tensor, threshold: torch.Tensor | None = None) -> torch.Tensor:
    """The value of sign(x - threshold) alone, in one pass where fused_sign.py's kernels apply."""
    if fused_sign.applies(x):
        return fused_sign.sign_values(x, threshold)
    return _binary(x if threshold is None else x - threshold)


def _clipped_sign(x: torch.Tensor, threshold: torch.Tensor | None = None) -> torch.Tensor:
    """sign(x - threshold) with the clipped straight-through gradient, for a training pass."""
    if fused_sign.applies(x):
        return fused_sign.clipped_sign(x, threshold)
    return _ClippedSign.apply(x if threshold is None else x - threshold)


class _ClippedSign(torch.autograd.Function):
    """sign(x) forward; backward the gradient where -1 <= x <= 1 and 0 elsewhere: exactly what
    `_straight_through(torch.clamp(x, -1, 1), _binary(x))` gives (clamp's backward keeps both
    ends), computed from a saved mask instead of clamp, subtract and add."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x.abs().le_(1.0))  # 1.0 inside [-1, 1], 0.0 outside
        return _binary(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (inside,) = ctx.saved_tensors
        # grad x 0.0 is -0.0 where grad < 0; adding +0.0 makes it the +0.0 clamp's backward writes.
        return grad.mul(inside).add_(0.0)


class _SignThrough(torch.autograd.Function):
    """sign(x) forward; the incoming gradient passed unchanged to `surrogate` (the straight-through
    step of `_straight_through(surrogate, _binary(x))`, whose subtract and add pass it unchanged too)."""

    @staticmethod
    def forward(ctx, surrogate: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return _binary(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def _per_output_channel(w: torch.Tensor, reduce: Callable[..., torch.Tensor]) -> torch.Tensor:
    return reduce(w, dim=tuple(range(1, w.dim())), keepdim=True)


class FullPrecision(nn.Module):
    """Identity: 32-bit floats."""

    bits = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


# --- 1-bit activations ------------------------------------------------------------------------
class SignSTE(nn.Module):
    """Binary activations in {-1, +1}; clipped straight-through gradient (zero where |x| > 1)."""

    bits = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _value_only():
            return _sign_values(x)
        if _fused(self):
            return _clipped_sign(x)
        surrogate = torch.clamp(x, -1.0, 1.0)
        return _straight_through(surrogate, _binary(x))


class ApproxSign(nn.Module):
    """Bi-Real Net's sign: forward {-1, +1}; gradient of the piecewise polynomial
    2x + x^2 (x < 0), 2x - x^2 (x >= 0), clipped at |x| = 1, i.e. 2 - 2|x| inside [-1, 1].

    Closer to the true sign than the clipped identity, so the gradient mismatch is smaller.
    """

    bits = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _value_only():
            return _sign_values(x)
        clipped = torch.clamp(x, -1.0, 1.0)
        surrogate = 2 * clipped - clipped * clipped.abs()
        if _fused(self):
            return _SignThrough.apply(surrogate, x)
        return _straight_through(surrogate, _binary(x))


class RSign(nn.Module):
    """ReActNet's RSign: sign(x - threshold) with a learnable per-channel threshold.

    `channels=1` gives one threshold shared by all channels (it broadcasts).
    """

    bits = 1

    def __init__(self, channels: int = 1):
        super().__init__()
        self.threshold = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        threshold = self.threshold if x.dim() == 4 else self.threshold.flatten(1)
        if _value_only():
            return _sign_values(x, threshold)
        if _fused(self):
            return _clipped_sign(x, threshold)
        shifted = x - threshold
        surrogate = torch.clamp(shifted, -1.0, 1.0)
        return _straight_through(surrogate, _binary(shifted))


# --- 1-bit weights ----------------------------------------------------------------------------
class ScaledSignWeights(nn.Module):
    """Binary weights with XNOR-Net's per-output-channel scale alpha = mean(|w|).

    The scale folds into the output channel after the integer XNOR-popcount accumulation, so
    the convolution itself stays binary (counted as BOPs).
    """

    bits = 1

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        scale = _per_output_channel(w.abs(), torch.mean)
        return _straight_through(w, scale * _binary(w))


class SignWeights(nn.Module):
    """Binary weights in {-1, +1} without a scale (QuickNet, ReActNet with BN after the conv)."""

    bits = 1

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if _fused(self):
            return _ClippedSign.apply(w)
        return _straight_through(torch.clamp(w, -1.0, 1.0), _binary(w))


# --- 2 bits -----------------------------------------------------------------------------------
def _two_bit(x: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """Nearest of {-1, -a, +a, +1} to x (after clipping to [-1, 1]), with `inner` = a.

    The level choice is detached; `a` keeps its gradient (it multiplies the inner levels), so
    it is learned like LSQ's step size. x gets the clipped straight-through gradient.
    """
    sign = _binary(x).detach()
    outer = (x.abs() >= (1 + inner) / 2).detach()
    levels = torch.where(outer, sign, sign * inner)
    clipped = torch.clamp(x, -1.0, 1.0)
    return (clipped - clipped.detach()) + levels


class TwoBitSymmetric(nn.Module):
    """2-bit activations on the symmetric levels {-1, -a, +a, +1} with a learned 0 < a < 1.

    The "+1, +0.3, -0.3, -1" quantization: `a` starts at 0.3 and is kept inside (0.05, 0.95) so
    that the four levels stay distinct.
    """

    bits = 2

    def __init__(self, inner: float = 0.3):
        super().__init__()
        if not 0.0 < inner < 1.0:
            raise ValueError(f"inner level must lie in (0, 1), got {inner}")
        self.inner = nn.Parameter(torch.tensor(float(inner)))

    def level(self) -> torch.Tensor:
        return self.inner.clamp(0.05, 0.95)

    def levels(self) -> torch.Tensor:
        a = float(self.level())
        return torch.tensor([-1.0, -a, a, 1.0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _two_bit(x, self.level())


class TwoBitWeights(TwoBitSymmetric):
    """2-bit weights: per output channel, w / max|w| on {-1, -a, +a, +1}, scaled back by max|w|."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        scale = _per_output_channel(w.abs(), torch.amax).detach().clamp_min(1e-8)
        return scale * _two_bit(w / scale, self.level())


# --- k bits (4, 8) ----------------------------------------------------------------------------
class LsqActivations(nn.Module):
    """k-bit signed uniform activations with a learned step (LSQ, Esser et al. 2020).

    Levels are step x {-2^(k-1), ..., 2^(k-1) - 1}. The step starts at LSQ's 2 E|x| / sqrt(Qp)
    for unit-variance inputs (BN precedes every quantized conv), and its gradient is scaled by
    1 / sqrt(numel x Qp) as in the paper.
    """

    def __init__(self, bits: int = 8):
        super().__init__()
        if bits not in (2, 3, 4, 5, 6, 7, 8):
            raise ValueError(f"LSQ takes 2..8 bits, got {bits}")
        self.bits = bits
        self.qn, self.qp = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        self.step = nn.Parameter(torch.tensor(2 * 0.8 / math.sqrt(self.qp)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grad_scale = 1.0 / math.sqrt(x.numel() * self.qp)
        step = self.step.abs().clamp_min(1e-6)
        step = (step - step.detach()) * grad_scale + step.detach()
        scaled = torch.clamp(x / step, self.qn, self.qp)
        return _straight_through(scaled, torch.round(scaled)) * step


class UniformWeights(nn.Module):
    """k-bit symmetric uniform weights, per output channel: max|w| / (2^(k-1) - 1) x integers in
    [-(2^(k-1) - 1), 2^(k-1) - 1] (DoReFa-style scaling, straight-through rounding)."""

    def __init__(self, bits: int = 8):
        super().__init__()
        if bits not in (2, 3, 4, 5, 6, 7, 8):
            raise ValueError(f"uniform weights take 2..8 bits, got {bits}")
        self.bits = bits
        self.qp = 2 ** (bits - 1) - 1

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        step = (_per_output_channel(w.abs(), torch.amax) / self.qp).detach().clamp_min(1e-8)
        scaled = w / step
        return _straight_through(scaled, torch.round(scaled)) * step


QUANTIZERS: dict[str, Callable[[], nn.Module]] = {
    "fp32": FullPrecision,
    "sign_ste": SignSTE,
    "approx_sign": ApproxSign,
    "rsign": RSign,
    "scaled_sign": ScaledSignWeights,
    "sign_weights": SignWeights,
    "two_bit": TwoBitSymmetric,
    "two_bit_weights": TwoBitWeights,
    "lsq4": functools.partial(LsqActivations, 4),
    "lsq8": functools.partial(LsqActivations, 8),
    "uniform4_weights": functools.partial(UniformWeights, 4),
    "uniform8_weights": functools.partial(UniformWeights, 8),
}


def activation_quantizer(bits: int, *, binary: Callable[[], nn.Module] = SignSTE) -> nn.Module:
    """The default activation quantizer for `bits`; `binary` picks the 1-bit one."""
    if bits == 1:
        return binary()
    if bits == 2:
        return TwoBitSymmetric()
    if bits in (4, 8):
        return LsqActivations(bits)
    if bits == 32:
        return FullPrecision()
    raise ValueError(f"no activation quantizer for {bits} bits; choose one of {BIT_WIDTHS}")


def weight_quantizer(bits: int, *, binary: Callable[[], nn.Module] = ScaledSignWeights) -> nn.Module:
    """The default weight quantizer for `bits`; `binary` picks the 1-bit one."""
    if bits == 1:
        return binary()
    if bits == 2:
        return TwoBitWeights()
    if bits in (4, 8):
        return UniformWeights(bits)
    if bits == 32:
        return FullPrecision()
    raise ValueError(f"no weight quantizer for {bits} bits; choose one of {BIT_WIDTHS}")
