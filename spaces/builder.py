"""The one pure function from genotype to `torch.nn.Module`."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import BLOCKS
from .genotype import Genotype
from .layers import fp_conv


class Network(nn.Module):
    """stem (full precision) -> stages -> ReLU -> global average pool -> FC (full precision)."""

    def __init__(self, stem: nn.Module, stages: nn.Sequential, width: int, num_classes: int):
        super().__init__()
        self.stem = stem
        self.stages = stages
        self.head_act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(self.head_act(x)), 1))


def build_model(genotype: Genotype) -> nn.Module:
    """Build the network a genotype describes. Weights are freshly initialised (seed torch first)."""
    # No ReLU after the stem: a binary first stage must see signed inputs, or every sign is +1.
    stem = nn.Sequential(fp_conv(genotype.in_channels, genotype.stem_width, 3), nn.BatchNorm2d(genotype.stem_width))
    blocks: list[nn.Module] = []
    channels = genotype.stem_width
    for stage in genotype.stages:
        factory = BLOCKS[stage.block]
        for index in range(stage.depth):
            stride = stage.stride if index == 0 else 1
            blocks.append(factory(channels, stage.width, stride, stage.kernel))
            channels = stage.width
    return Network(stem, nn.Sequential(*blocks), channels, genotype.num_classes)
