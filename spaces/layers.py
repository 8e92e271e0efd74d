"""Quantized layers (torch's own conv and linear maths with quantizers in front) and the small
parts blocks share: learnable shifts, RPReLU, squeeze-excitation, channel shuffle."""

from __future__ import annotations

import torch
from torch import nn

from .fused_rprelu import fused_rprelu, takes_fused_path
from .quantizers import FullPrecision


class _Quantized:
    """What quantized layers share: an input and a kernel quantizer (full precision when not
    given) and the bit widths they declare, which the cost counter reads."""

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


class QuantConv2d(_Quantized, nn.Conv2d):
    """`nn.Conv2d` whose input and kernel pass through quantizers first."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.input_quantizer(x), self.kernel_quantizer(self.weight), self.bias)


class QuantLinear(_Quantized, nn.Linear):
    """`nn.Linear` whose input and weight pass through quantizers first (8-bit classifiers)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(self.input_quantizer(x), self.kernel_quantizer(self.weight), self.bias)


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


class RPReLU(nn.Module):
    """ReActNet's RPReLU: shift, per-channel PReLU, shift; reshapes the distribution cheaply."""

    def __init__(self, channels: int):
        super().__init__()
        self.shift_in = LearnableThreshold(channels)
        self.prelu = nn.PReLU(channels, init=0.25)
        self.shift_out = LearnableThreshold(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if takes_fused_path(self, x):  # training on the CPU: one pass each way (fused_rprelu.py)
            return fused_rprelu(x, self.shift_in.shift, self.prelu.weight, self.shift_out.shift)
        return self.shift_out(self.prelu(self.shift_in(x)))


class SqueezeExcite(nn.Module):
    """Squeeze-excitation (MobileNetV3/EfficientNet): pooled channel gates from two 1x1 convs."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(hidden, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle, so that information crosses the groups of grouped convs."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.groups == 1:
            return x
        batch, channels, height, width = x.shape
        x = x.reshape(batch, self.groups, channels // self.groups, height, width)
        return x.transpose(1, 2).reshape(batch, channels, height, width)


def fp_conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False)


def linear(in_features: int, out_features: int) -> nn.Linear:
    return nn.Linear(in_features, out_features)


__all__ = ["ChannelShuffle", "LearnableThreshold", "QuantConv2d", "QuantLinear", "RPReLU", "SqueezeExcite",
           "fp_conv", "linear"]
