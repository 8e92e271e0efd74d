"""Every registered block: forward, backward, no NaN on a tiny CPU input, at every shape kind and
every bit width it declares; the two blocks the inference engine compiles keep their layout."""

import pytest
import torch
from torch import nn

from bitnas.spaces import BLOCKS
from bitnas.spaces.blocks import BLOCK_INFO, BinaryConvBlock, FloatConvBlock, make_shortcut

SHAPES = [(8, 8, 1), (8, 16, 2), (4, 12, 1), (4, 4, 2)]  # kept, widened + strided, tripled, strided


def options(name: str) -> dict:
    """Valid keyword options for every shape above (all widths are even)."""
    info = BLOCK_INFO[name]
    chosen = {"expansion": 2, "se": True, "groups": 2, "downsample": "fp"}
    return {option: chosen[option] for option in info.options}


def run_block(block: nn.Module, in_channels: int, out_channels: int, stride: int) -> None:
    x = torch.randn(2, in_channels, 9, 9, requires_grad=True)
    y = block(x)
    size = (9 + stride - 1) // stride
    assert y.shape == (2, out_channels, size, size)
    y.square().mean().backward()
    assert torch.isfinite(y).all()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in block.parameters())


@pytest.mark.parametrize("name", sorted(BLOCKS))
@pytest.mark.parametrize("in_channels, out_channels, stride", SHAPES)
def test_every_block_runs_forward_and_backward(name, in_channels, out_channels, stride):
    torch.manual_seed(0)
    block = BLOCKS[name](in_channels=in_channels, out_channels=out_channels, stride=stride, kernel=3, **options(name))
    run_block(block, in_channels, out_channels, stride)


@pytest.mark.parametrize("name, bits", [(name, bits) for name in sorted(BLOCKS)
                                        for bits in sorted(set(BLOCK_INFO[name].weight_bits))
                                        if len(BLOCK_INFO[name].weight_bits) > 1])
def test_every_block_runs_at_every_declared_bit_width(name, bits):
    torch.manual_seed(0)
    block = BLOCKS[name](in_channels=8, out_channels=16, stride=2, kernel=5, weight_bits=bits, activation_bits=bits,
                         **options(name))
    run_block(block, 8, 16, 2)
    quantized = [m for m in block.modules() if hasattr(m, "weight_bits")]
    assert quantized and all(m.weight_bits == bits and m.input_bits == bits for m in quantized
                             if m.kernel_size != (1, 1) or m.groups == 1)


@pytest.mark.parametrize("kind", ["fp", "binary", "maxpool"])
def test_every_downsample_shortcut_maps_shape(kind):
    shortcut = make_shortcut(kind, 8, 16, 2)
    assert shortcut(torch.randn(1, 8, 9, 9)).shape == (1, 16, 5, 5)
    assert isinstance(make_shortcut(kind, 8, 8, 1), nn.Identity)


def test_every_block_declares_what_it_takes():
    assert set(BLOCK_INFO) == set(BLOCKS)
    for info in BLOCK_INFO.values():
        assert info.summary and set(info.weight_bits) <= {1, 2, 4, 8, 32}
    assert BLOCK_INFO["binary"].default_bits == (1, 1) and BLOCK_INFO["float"].default_bits == (32, 32)
    assert BLOCK_INFO["reactnet"].default_bits == (1, 1) and BLOCK_INFO["mbconv"].default_bits == (32, 32)


def test_engine_blocks_keep_their_layout():
    # The packed inference engine compiles these two classes by their attributes: keep them fixed.
    assert BLOCKS["float"] is FloatConvBlock and BLOCKS["binary"] is BinaryConvBlock
    assert [name for name, _ in FloatConvBlock(4, 8, 1, 3).named_children()] == ["conv", "bn", "act"]
    assert [name for name, _ in BinaryConvBlock(4, 8, 2, 3).named_children()] == ["threshold", "conv", "bn", "shortcut"]
    assert [name for name, _ in BinaryConvBlock(4, 4, 1, 3).named_children()] == ["threshold", "conv", "bn", "shortcut"]


def test_reactnet_duplicates_and_concatenates_when_widening():
    block = BLOCKS["reactnet"](in_channels=8, out_channels=16, stride=2, kernel=3)
    assert len(block.convs_1x1) == 2 and all(conv.out_channels == 8 for conv in block.convs_1x1)
    assert isinstance(block.shortcut_1x1, nn.Identity)  # no full-precision downsampling at all
    assert not any(isinstance(m, nn.Conv2d) and getattr(m, "weight_bits", 32) == 32 for m in block.modules())


def test_dense_block_grows_by_its_growth_and_improves_the_newest_channels():
    torch.manual_seed(0)
    block = BLOCKS["melius"](in_channels=8, out_channels=12, stride=1, kernel=3, growth=4)
    x = torch.randn(1, 8, 5, 5)
    y = block(x)
    assert y.shape == (1, 12, 5, 5)
    assert torch.equal(y[:, :8], x)  # the dense block only adds channels; the improvement touches the new ones
    assert isinstance(block.transition, nn.Identity)
