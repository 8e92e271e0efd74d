"""Blocks, registered by name. A block maps (in_channels, out_channels, stride, kernel) plus the
keyword options its registry entry declares to a module.

The registry is the single place a stage's `block` name is resolved: `BLOCKS[name]` is the factory,
`BLOCK_INFO[name]` (spaces/catalog.py, which needs no torch) says which bit widths and stage options
the block takes, so that a genotype is validated before torch is even imported. The contract test runs every entry forward and backward.

The "float" and "binary" blocks keep their module attributes (`conv`, `bn`, `act` /
`threshold`, `conv`, `bn`, `shortcut`): the packed inference engine compiles them by class.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .layers import ChannelShuffle, LearnableThreshold, QuantConv2d, RPReLU, SqueezeExcite, fp_conv
from .catalog import BLOCK_INFO, BlockInfo
from .quantizers import (
    RSign,
    ScaledSignWeights,
    SignSTE,
    SignWeights,
    activation_quantizer,
    weight_quantizer,
)

BlockFactory = Callable[..., nn.Module]
# name -> factory; every name here has its metadata in catalog.BLOCK_INFO.
BLOCKS: dict[str, BlockFactory] = {}


def register_block(name: str, *, summary: str = "", weight_bits: tuple[int, ...] = (32,),
                   activation_bits: tuple[int, ...] = (32,), options: tuple[str, ...] = (),
                   dense: bool = False) -> Callable[[BlockFactory], BlockFactory]:
    """A plugin's block: its metadata (checked now) and its factory, under a new name."""
    if name in BLOCK_INFO:
        raise ValueError(f"block {name!r} registered twice")

    def add(factory: BlockFactory) -> BlockFactory:
        info = BlockInfo(name, summary or (factory.__doc__ or "").split("\n")[0], weight_bits, activation_bits,
                         options, dense)
        BLOCK_INFO[name] = info
        BLOCKS[name] = factory
        return factory

    return add


def _builds(name: str) -> Callable[[BlockFactory], BlockFactory]:
    """The factory of a built-in block, whose metadata the catalog declares."""
    def add(factory: BlockFactory) -> BlockFactory:
        assert name in BLOCK_INFO and name not in BLOCKS, name
        BLOCKS[name] = factory
        return factory

    return add


def qconv(in_channels: int, out_channels: int, kernel: int, stride: int = 1, *, groups: int = 1,
          weight_bits: int = 32, activation_bits: int = 32,
          binary_input: Callable[[], nn.Module] = SignSTE,
          binary_weights: Callable[[], nn.Module] = ScaledSignWeights) -> QuantConv2d:
    """A bias-free conv with 'same' padding whose operands are quantized to the given widths."""
    return QuantConv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, groups=groups,
                       bias=False, input_quantizer=activation_quantizer(activation_bits, binary=binary_input),
                       kernel_quantizer=weight_quantizer(weight_bits, binary=binary_weights))


# --- shortcuts --------------------------------------------------------------------------------
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


class BinaryDownsampleShortcut(nn.Module):
    """AvgPool -> binary 1x1 conv (sign input, scaled sign weights) -> BN: no FLOPs at all."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.pool = nn.AvgPool2d(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity()
        self.conv = qconv(in_channels, out_channels, 1, weight_bits=1, activation_bits=1)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(self.pool(x)))


class MaxPoolShortcut(nn.Module):
    """MeliusNet/QuickNet-style transition: MaxPool -> full-precision 1x1 conv -> BN
    (the conv only where the channel count changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.pool = nn.MaxPool2d(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity()
        self.conv = fp_conv(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(self.pool(x)))


def make_shortcut(kind: str, in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Identity where the shape is kept, else the downsampling shortcut `kind` names."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    shortcuts = {"fp": DownsampleShortcut, "binary": BinaryDownsampleShortcut, "maxpool": MaxPoolShortcut}
    if kind not in shortcuts:
        raise ValueError(f"unknown downsample {kind!r}; known: {', '.join(shortcuts)}")
    return shortcuts[kind](in_channels, out_channels, stride)


# --- the two original blocks (attributes fixed: the inference engine compiles them) -----------
@_builds("float")
class FloatConvBlock(nn.Module):
    """conv k x k -> BN -> ReLU, all in 32-bit floats."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, kernel: int):
        super().__init__()
        self.conv = fp_conv(in_channels, out_channels, kernel, stride)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


@_builds("binary")
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


# --- binary network blocks --------------------------------------------------------------------
@_builds("xnor")
class XnorBlock(nn.Module):
    """XNOR-Net's ResNet basic block: BN -> sign -> binary conv, twice, with one real shortcut
    around the pair (XNOR-Net's alpha = mean|w| per output channel; the activation scale K is
    folded into the following BN)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, kernel: int, *,
                 weight_bits: int = 1, activation_bits: int = 1, downsample: str = "fp"):
        super().__init__()
        bits = dict(weight_bits=weight_bits, activation_bits=activation_bits)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = qconv(in_channels, out_channels, kernel, stride, **bits)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = qconv(out_channels, out_channels, kernel, 1, **bits)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut = make_shortcut(downsample, in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn3(self.conv2(self.bn2(self.conv1(self.bn1(x))))) + self.shortcut(x)


@_builds("reactnet")
class ReActBlock(nn.Module):
    """ReActNet-A block (MobileNetV1 layout): RSign -> binary k x k conv (in -> in, stride) -> BN,
    + shortcut (AvgPool where strided) -> RPReLU; then RSign -> binary 1x1 -> BN + shortcut -> RPReLU.

    Where out = m x in, the 1x1 part is m binary 1x1 convs (in -> in) whose outputs, each with the
    shortcut added, are concatenated: ReActNet's duplicate-and-concatenate, no full-precision
    downsampling at all. Any other width change uses the `downsample` shortcut on the 1x1 part.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, kernel: int, *,
                 weight_bits: int = 1, activation_bits: int = 1, downsample: str = "fp"):
        super().__init__()

        def conv(cin: int, cout: int, k: int, s: int) -> QuantConv2d:
            return qconv(cin, cout, k, s, weight_bits=weight_bits, activation_bits=activation_bits,
                         binary_input=lambda: RSign(cin))

        self.conv_k = conv(in_channels, in_channels, kernel, stride)
        self.bn_k = nn.BatchNorm2d(in_channels)
        self.shortcut_k = nn.AvgPool2d(2, stride, ceil_mode=True) if stride > 1 else nn.Identity()
        self.act_k = RPReLU(in_channels)
        copies = out_channels // in_channels if out_channels % in_channels == 0 else 1
        part = out_channels // copies
        self.convs_1x1 = nn.ModuleList(conv(in_channels, part, 1, 1) for _ in range(copies))
        self.bns_1x1 = nn.ModuleList(nn.BatchNorm2d(part) for _ in range(copies))
        self.shortcut_1x1 = make_shortcut(downsample, in_channels, part, 1)
        self.act_1x1 = RPReLU(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act_k(self.bn_k(self.conv_k(x)) + self.shortcut_k(x))
        residual = self.shortcut_1x1(x)
        out = torch.cat([bn(conv(x)) + residual for conv, bn in zip(self.convs_1x1, self.bns_1x1)], dim=1)
        return self.act_1x1(out)


@_builds("quicknet")
class QuickNetBlock(nn.Module):
    """QuickNet (larq zoo) residual block: sign -> binary k x k conv (unscaled sign weights) ->
    ReLU -> BN, added to the shortcut. ReLU before BN is QuickNet's choice: it keeps the block's
    contribution non-negative so that the shortcut carries the sign information."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, kernel: int, *,
                 weight_bits: int = 1, activation_bits: int = 1, downsample: str = "maxpool"):
        super().__init__()
        self.conv = qconv(in_channels, out_channels, kernel, stride, weight_bits=weight_bits,
                          activation_bits=activation_bits, binary_weights=SignWeights)
        self.act = nn.ReLU(inplace=True)
        self.bn = nn.BatchNorm2d(out_channels)
        self.shortcut = make_shortcut(downsample, in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.act(self.conv(x))) + self.shortcut(x)


class _Transition(nn.Module):
    """MeliusNet / BinaryDenseNet transition: BN -> MaxPool -> ReLU -> full-precision 1x1 conv."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels)
        self.pool = nn.MaxPool2d(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity()
        self.act = nn.ReLU(inplace=True)
        self.conv = fp_conv(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.act(self.pool(self.bn(x))))


@_builds("binary_dense")
class BinaryDenseBlock(nn.Module):
    """BinaryDenseNet: (transition where the stage starts) -> BN -> sign -> binary k x k conv
    producing `growth` new channels, concatenated to its input. in -> in + growth channels.

    `growth` defaults to out - in; a transition (`_Transition`) first maps in -> out - growth
    where the stage starts (stride > 1 or a different width). The builder plans the growths.
    """

    improvement = False

    def __init__(self, in_channels: int, out_channels: int, stride: int, kernel: int, *,
                 growth: int | None = None, weight_bits: int = 1, activation_bits: int = 1):
        super().__init__()
        growth = growth if growth is not None else (out_channels - in_channels if out_channels > in_channels
                                                    else max(1, out_channels // 2))
        if not 0 < growth < out_channels:
            raise ValueError(f"growth must lie in 1..{out_channels - 1}, got {growth}")
        base = out_channels - growth
        self.growth = growth
        if stride > 1 or in_channels != base:
            self.transition: nn.Module = _Transition(in_channels, base, stride)
        else:
            self.transition = nn.Identity()
        bits = dict(weight_bits=weight_bits, activation_bits=activation_bits)
        self.dense_bn = nn.BatchNorm2d(base)
        self.dense_conv = qconv(base, growth, kernel, **bits)
        if self.improvement:
            self.improve_bn = nn.BatchNorm2d(out_channels)
            self.improve_conv = qconv(out_channels, growth, kernel, **bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.transition(x)
        x = torch.cat([x, self.dense_conv(self.dense_bn(x))], dim=1)
        if self.improvement:
            kept, last = x[:, : -self.growth], x[:, -self.growth :]
            x = torch.cat([kept, last + self.improve_conv(self.improve_bn(x))], dim=1)
        return x


@_builds("melius")
class MeliusBlock(BinaryDenseBlock):
    """MeliusNet: a dense block (adds `growth` channels) followed by an improvement block, a
    second binary conv over all channels whose output is added to the newest `growth` channels,
    raising their quality instead of only the capacity."""

    improvement = True


# --- compact blocks ---------------------------------------------------------------------------
@_builds("dwsep")
class DepthwiseSeparableBlock(nn.Module):
    """MobileNetV1: depthwise k x k (stride) -> BN -> ReLU -> pointwise 1x1 -> BN -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, kernel: int, *,
                 weight_bits: int = 32, activation_bits: int = 32):
        super().__init__()
        bits = dict(weight_bits=weight_bits, activation_bits=activation_bits)
        self.depthwise = qconv(in_channels, in_channels, kernel, stride, groups=in_channels, **bits)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.pointwise = qconv(in_channels, out_channels, 1, **bits)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn2(self.pointwise(self.act(self.bn1(self.depthwise(x))))))


@_builds("mbconv")
class InvertedResidualBlock(nn.Module):
    """MobileNetV2 / EfficientNet MBConv: 1x1 expand (x expansion; skipped at 1) -> BN -> ReLU6
    -> depthwise k x k (stride) -> BN -> ReLU6 -> [squeeze-excitation] -> 1x1 project -> BN,
    with an identity shortcut where the shape is kept (linear bottleneck: no activation after)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, kernel: int, *,
                 expansion: int = 6, se: bool = False, weight_bits: int = 32, activation_bits: int = 32):
        super().__init__()
        bits = dict(weight_bits=weight_bits, activation_bits=activation_bits)
        hidden = in_channels * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [qconv(in_channels, hidden, 1, **bits), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [qconv(hidden, hidden, kernel, stride, groups=hidden, **bits), nn.BatchNorm2d(hidden), nn.ReLU6()]
        if se:
            layers.append(SqueezeExcite(hidden))
        layers += [qconv(hidden, out_channels, 1, **bits), nn.BatchNorm2d(out_channels)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out + x if self.residual else out


@_builds("shuffle")
class ShuffleBlock(nn.Module):
    """ShuffleNet unit: grouped 1x1 (in -> out) -> BN -> ReLU -> channel shuffle -> depthwise
    k x k (stride) -> BN -> grouped 1x1 -> BN, + shortcut -> ReLU. `groups` must divide both
    widths (the genotype validator checks)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, kernel: int, *,
                 groups: int = 2, downsample: str = "fp", weight_bits: int = 32, activation_bits: int = 32):
        super().__init__()
        bits = dict(weight_bits=weight_bits, activation_bits=activation_bits)
        self.body = nn.Sequential(
            qconv(in_channels, out_channels, 1, groups=groups, **bits), nn.BatchNorm2d(out_channels), nn.ReLU(),
            ChannelShuffle(groups),
            qconv(out_channels, out_channels, kernel, stride, groups=out_channels, **bits), nn.BatchNorm2d(out_channels),
            qconv(out_channels, out_channels, 1, groups=groups, **bits), nn.BatchNorm2d(out_channels),
        )
        self.shortcut = make_shortcut(downsample, in_channels, out_channels, stride)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


_unbuilt = sorted(set(BLOCK_INFO) - set(BLOCKS))
assert not _unbuilt, f"catalog blocks without a factory: {_unbuilt}"
