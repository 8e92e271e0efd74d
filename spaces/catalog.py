"""What each block accepts, without torch: the genotype validator, the space decoder and the
config check read this, so that bad input is answered before torch is imported (importing torch
takes seconds). The modules that build blocks (`blocks.py`) attach a factory to each name here.

A block's metadata says which bit widths it takes (the first is its default), which stage options
it reads, and whether it grows channels inside a stage.
"""

from __future__ import annotations

from dataclasses import dataclass

BIT_WIDTHS = (1, 2, 4, 8, 32)
# Stage options a block may declare (the other stage fields, width/depth/stride/kernel, every block takes).
OPTIONS = ("expansion", "se", "groups", "downsample")
DOWNSAMPLES = ("fp", "binary", "maxpool")

# 1-bit-first orders: a binary block defaults to 1/1, a compact one to 32/32.
_BINARY_FIRST = (1, 2, 4, 8, 32)
_FLOAT_FIRST = (32, 8, 4, 2, 1)


@dataclass(frozen=True)
class BlockInfo:
    """What a registered block accepts; the genotype validator and the space decoder read it."""

    name: str
    summary: str
    weight_bits: tuple[int, ...] = (32,)      # allowed weight widths; the first is the default
    activation_bits: tuple[int, ...] = (32,)  # allowed activation widths; the first is the default
    options: tuple[str, ...] = ()             # which of OPTIONS the block reads
    dense: bool = False                       # grows channels inside a stage (see builder.stage_plan)

    def __post_init__(self) -> None:
        unknown = [option for option in self.options if option not in OPTIONS]
        if unknown:
            raise ValueError(f"block {self.name!r}: unknown option {unknown[0]!r}; known: {', '.join(OPTIONS)}")
        for bits in (*self.weight_bits, *self.activation_bits):
            if bits not in BIT_WIDTHS:
                raise ValueError(f"block {self.name!r}: bit width {bits} is not one of {BIT_WIDTHS}")

    @property
    def default_bits(self) -> tuple[int, int]:
        return self.weight_bits[0], self.activation_bits[0]


def _entries(*infos: BlockInfo) -> dict[str, BlockInfo]:
    return {info.name: info for info in infos}


# The built-in blocks; plugins add theirs through `bitnas.spaces.register_block`.
BLOCK_INFO: dict[str, BlockInfo] = _entries(
    BlockInfo("float", "conv-BN-ReLU in 32-bit floats"),
    BlockInfo("binary", "Bi-Real block: threshold, sign, 1-bit conv, BN, real shortcut", (1,), (1,)),
    BlockInfo("xnor", "XNOR-Net basic block: 2 x (BN, sign, scaled 1-bit conv), shortcut around the pair",
              _BINARY_FIRST, _BINARY_FIRST, ("downsample",)),
    BlockInfo("reactnet", "ReActNet block: RSign, 1-bit kxk and 1x1 convs, RPReLU, duplicated 1x1 when widening",
              _BINARY_FIRST, _BINARY_FIRST, ("downsample",)),
    BlockInfo("quicknet", "QuickNet residual block: sign, 1-bit conv, ReLU, BN, shortcut",
              _BINARY_FIRST, _BINARY_FIRST, ("downsample",)),
    BlockInfo("binary_dense", "BinaryDenseNet dense layer: BN, sign, 1-bit conv, concatenate",
              _BINARY_FIRST, _BINARY_FIRST, dense=True),
    BlockInfo("melius", "MeliusNet dense block + improvement block (1-bit), FP transitions",
              _BINARY_FIRST, _BINARY_FIRST, dense=True),
    BlockInfo("dwsep", "depthwise-separable: depthwise kxk, BN, ReLU, pointwise 1x1, BN, ReLU",
              _FLOAT_FIRST, _FLOAT_FIRST),
    BlockInfo("mbconv", "MBConv inverted residual: 1x1 expand, depthwise kxk, optional SE, 1x1 project",
              _FLOAT_FIRST, _FLOAT_FIRST, ("expansion", "se")),
    BlockInfo("shuffle", "grouped 1x1, channel shuffle, depthwise kxk, grouped 1x1, shortcut",
              _FLOAT_FIRST, _FLOAT_FIRST, ("groups", "downsample")),
)
