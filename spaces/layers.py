"""Quantized layers: torch's own conv and linear maths with quantizers in front."""

from __future__ import annotations

import torch
from torch import nn

from .quantizers import FullPrecision


class QuantConv2d(nn.Conv2d):
    """`nn.Conv2d` whose input and kernel pass through quantizers first.

    `input_bits` and `weight_bits` come from the quantizers; the cost counter reads them.
    """

    def __init__(self, *args, input_quantizer: nn.Module | None = None,
                 kernel_quantizer: nn.Module | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.input_quantizer = input_quantizer or FullPrecision()
        self.kernel_quantizer = kernel_quantizer or FullPrecision()

    @property
    def input_bits(self) -> int:
        return self.input_quantizer.bits

    @property
    def weight_bits(self) -> int:
        return self.kernel_quantizer.bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.input_quantizer(x), self.kernel_quantizer(self.weight), self.bias)


class LearnableThreshold(nn.Module):
    """Per-channel learnable shift applied before a sign (ReActNet's RSign threshold).

    Lets a binary layer that follows a ReLU (all inputs >= 0) learn where to cut, instead of
    seeing +1 everywhere.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift


def fp_conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False)


def linear(in_features: int, out_features: int) -> nn.Linear:
    return nn.Linear(in_features, out_features)


__all__ = ["QuantConv2d", "LearnableThreshold", "fp_conv", "linear"]
