"""Quantizers: tiny named objects that map a tensor to its low-bit form in the forward pass.

Each declares its `bits`, which the cost counter reads. The straight-through estimators are
written as `_straight_through(surrogate, quantized)`: the forward value is exactly the quantized
one, the gradient is the surrogate's. No custom autograd function is needed, so models export to
ONNX as plain operators.
"""

from __future__ import annotations

import torch
from torch import nn


def _binary(x: torch.Tensor) -> torch.Tensor:
    # torch.sign maps 0 to 0, which is not a binary value; 0 goes to +1 as in the papers' kernels.
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


def _straight_through(surrogate: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
    # `surrogate - surrogate.detach()` is exactly zero in the forward pass, so the value is exactly
    # `quantized` (the textbook `s + (q - s).detach()` is off by rounding, which a bit-exact engine
    # would notice), while the gradient flows through the surrogate.
    return (surrogate - surrogate.detach()) + quantized.detach()


class FullPrecision(nn.Module):
    """Identity: 32-bit floats."""

    bits = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class SignSTE(nn.Module):
    """Binary activations in {-1, +1}; clipped straight-through gradient (zero where |x| > 1)."""

    bits = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        surrogate = torch.clamp(x, -1.0, 1.0)
        return _straight_through(surrogate, _binary(x))


class ScaledSignWeights(nn.Module):
    """Binary weights with XNOR-Net's per-output-channel scale alpha = mean(|w|).

    The scale folds into the output channel after the integer XNOR-popcount accumulation, so
    the convolution itself stays binary (counted as BOPs).
    """

    bits = 1

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        scale = w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)
        return _straight_through(w, scale * _binary(w))


QUANTIZERS: dict[str, type[nn.Module]] = {
    "fp32": FullPrecision,
    "sign_ste": SignSTE,
    "scaled_sign": ScaledSignWeights,
}
