"""The one pure function from genotype to `torch.nn.Module`."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import BLOCK_INFO, BLOCKS
from .genotype import Genotype, StageSpec
from .layers import QuantConv2d, QuantLinear, fp_conv
from .quantizers import LsqActivations, UniformWeights


class Network(nn.Module):
    """stem -> stages -> [1x1 head conv] -> ReLU -> global average pool -> classifier.

    The module names `stem`, `stages`, `head_act`, `pool`, `fc` are fixed (exported weights and
    the inference engine address them); `head` exists only when the genotype has a head conv.
    """

    def __init__(self, stem: nn.Module, stages: nn.Sequential, width: int, num_classes: int, *,
                 head: nn.Module | None = None, fc: nn.Module | None = None):
        super().__init__()
        self.stem = stem
        self.stages = stages
        if head is not None:
            self.head = head
        self.head_act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = fc if fc is not None else nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        if hasattr(self, "head"):
            x = self.head(x)
        return self.fc(torch.flatten(self.pool(self.head_act(x)), 1))


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int, bits: int) -> nn.Conv2d:
    if bits == 32:
        return fp_conv(in_channels, out_channels, kernel, stride)
    return QuantConv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False,
                       input_quantizer=LsqActivations(bits), kernel_quantizer=UniformWeights(bits))


def _stem(genotype: Genotype) -> nn.Sequential:
    # No ReLU after the stem: a binary first stage must see signed inputs, or every sign is +1.
    layers: list[nn.Module] = [
        _conv(genotype.in_channels, genotype.stem_width, genotype.stem_kernel, genotype.stem_stride, genotype.stem_bits),
        nn.BatchNorm2d(genotype.stem_width),
    ]
    if genotype.stem_pool:
        layers.append(nn.MaxPool2d(3, 2, padding=1))
    return nn.Sequential(*layers)


def stage_plan(stage: StageSpec, in_channels: int) -> list[tuple[int, int, int, dict]]:
    """(in channels, out channels, stride, extra keyword arguments) of each block of a stage.

    Ordinary blocks map to the stage width at once. Dense blocks (BinaryDenseNet, MeliusNet)
    grow it: the first block's transition maps the input to half the width, then each of the
    `depth` blocks adds its share of the other half (`growth`), so the stage ends at `width`.
    """
    if not BLOCK_INFO[stage.block].dense:
        return [(in_channels if index == 0 else stage.width, stage.width, stage.stride if index == 0 else 1, {})
                for index in range(stage.depth)]
    base = stage.width // 2
    share, extra = divmod(stage.width - base, stage.depth)
    plan, channels = [], base
    for index in range(stage.depth):
        growth = share + (1 if index < extra else 0)
        plan.append((in_channels if index == 0 else channels, channels + growth,
                     stage.stride if index == 0 else 1, {"growth": growth}))
        channels += growth
    return plan


def _block_kwargs(stage: StageSpec) -> dict:
    """The stage fields a block declares, passed as explicit keyword arguments."""
    info = BLOCK_INFO[stage.block]
    kwargs = {option: getattr(stage, option) for option in info.options}
    if len(info.weight_bits) > 1 or len(info.activation_bits) > 1:
        kwargs.update(weight_bits=stage.weight_bits, activation_bits=stage.activation_bits)
    return kwargs


def build_model(genotype: Genotype) -> nn.Module:
    """Build the network a genotype describes. Weights are freshly initialised (seed torch first).

    Modules are created in forward order (stem, blocks, head, classifier), so that one seed gives
    one set of initial weights, the same as before the space grew.
    """
    stem = _stem(genotype)
    blocks: list[nn.Module] = []
    channels = genotype.stem_width
    for stage in genotype.stages:
        factory, options = BLOCKS[stage.block], _block_kwargs(stage)
        for cin, cout, stride, extra in stage_plan(stage, channels):
            blocks.append(factory(in_channels=cin, out_channels=cout, stride=stride, kernel=stage.kernel,
                                  **options, **extra))
        channels = stage.width
    head = None
    if genotype.head_width:
        head = nn.Sequential(_conv(channels, genotype.head_width, 1, 1, genotype.head_bits),
                             nn.BatchNorm2d(genotype.head_width))
        channels = genotype.head_width
    fc = None
    if genotype.head_bits == 8:
        fc = QuantLinear(channels, genotype.num_classes, input_quantizer=LsqActivations(8),
                         kernel_quantizer=UniformWeights(8))
    return Network(stem, nn.Sequential(*blocks), channels, genotype.num_classes, head=head, fc=fc)
