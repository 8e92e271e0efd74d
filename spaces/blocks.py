"""Blocks, registered by name. A block maps (in_channels, out_channels, stride, kernel) to a module.

The registry is the single place a stage's `block` name is resolved; the contract test runs every
entry forward and backward.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .layers import LearnableThreshold, QuantConv2d, fp_conv
from .quantizers import ScaledSignWeights, SignSTE

BlockFactory = Callable[[int, int, int, int], nn.Module]
BLOCKS: dict[str, BlockFactory] = {}


def register_block(name: str) -> Callable[[BlockFactory], BlockFactory]:
    def add(factory: BlockFactory) -> BlockFactory:
        if name in BLOCKS:
            raise ValueError(f"block {name!r} registered twice")
        BLOCKS[name] = factory
        return factory

    return add


class FloatConvBlock(nn.Module):
    """conv k x k -> BN -> ReLU, all in 32-bit floats."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, kernel: int):
        super().__init__()
        self.conv = fp_conv(in_channels, out_channels, kernel, stride)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DownsampleShortcut(nn.Module):
    """Bi-Real Net's downsampling shortcut: AvgPool -> full-precision 1x1 conv -> BN.

    Kept in full precision as in the paper, so it counts towards FLOPs, not BOPs.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.pool = nn.AvgPool2d(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity()
        self.conv = fp_conv(in_channels, out_channels, 1)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(self.pool(x)))


class BinaryConvBlock(nn.Module):
    """Bi-Real Net block: learnable threshold -> sign -> binary k x k conv -> BN, plus a shortcut.

    The real-valued shortcut around every binary conv is what lets binary networks train well
    (Bi-Real Net); the identity is replaced by `DownsampleShortcut` where shape changes.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, kernel: int):
        super().__init__()
        self.threshold = LearnableThreshold(in_channels)
        self.conv = QuantConv2d(
            in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False,
            input_quantizer=SignSTE(), kernel_quantizer=ScaledSignWeights(),
        )
        self.bn = nn.BatchNorm2d(out_channels)
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = DownsampleShortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(self.threshold(x))) + self.shortcut(x)


register_block("float")(FloatConvBlock)
register_block("binary")(BinaryConvBlock)
