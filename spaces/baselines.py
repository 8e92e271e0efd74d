"""Reference architectures as genotypes: the hand-designed networks every search is judged against.

`BASELINES[name]` is a `Baseline`; `baseline_genotype(name, ...)` builds its genotype for an input
geometry. Two kinds:
- ImageNet-size (`birealnet18`, `reactnet_a`, `xnor_resnet18`): the papers' networks, whose cost
  figures are checked against the published ones (docs/references.md, "ImageNet reference costs");
- small (`SMALL_BASELINES`: names ending in `_small`): the same designs shrunk for 28x28 / 32x32
  inputs with the widths of the default search space, so that they train in a search's budget
  and stand on its Pareto front as labelled reference points. `small_baselines(...)` gives them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .genotype import Genotype, GenotypeError

GenotypeMaker = Callable[[int, int, int], Genotype]


class UnknownBaseline(GenotypeError):
    """A baseline name that is not registered."""


@dataclass(frozen=True)
class Baseline:
    name: str
    summary: str
    make: GenotypeMaker          # (input_size, in_channels, num_classes) -> Genotype
    input_size: int              # the geometry it was designed for (the CLI's defaults)
    in_channels: int
    num_classes: int

    def genotype(self, input_size: int | None = None, in_channels: int | None = None,
                 num_classes: int | None = None) -> Genotype:
        return self.make(input_size or self.input_size, in_channels or self.in_channels, num_classes or self.num_classes)


def _stages(block: str, layout: list[tuple[int, int, int]], **options) -> list[dict]:
    """(width, depth, stride) triples as stage dicts of one block type."""
    return [dict(block=block, width=width, depth=depth, stride=stride, **options) for width, depth, stride in layout]


def _genotype(input_size: int, in_channels: int, num_classes: int, **fields) -> Genotype:
    return Genotype.from_dict(dict(input_size=input_size, in_channels=in_channels, num_classes=num_classes, **fields))


# --- ImageNet size ----------------------------------------------------------------------------
_RESNET18 = [(64, 4, 1), (128, 4, 2), (256, 4, 2), (512, 4, 2)]  # in binary convs: 2 per basic block


def birealnet18(input_size: int, in_channels: int, num_classes: int) -> Genotype:
    """Bi-Real-18: ResNet-18 with a real shortcut around every binary 3x3 conv; FP 7x7 stem,
    FP AvgPool + 1x1 downsampling, FP classifier (Liu et al., ECCV 2018)."""
    return _genotype(input_size, in_channels, num_classes, stem_width=64, stem_kernel=7, stem_stride=2,
                     stem_pool=True, stages=_stages("binary", _RESNET18))


def xnor_resnet18(input_size: int, in_channels: int, num_classes: int) -> Genotype:
    """XNOR-Net ResNet-18: basic blocks of two scaled binary convs (Rastegari et al., ECCV 2016)."""
    layout = [(width, depth // 2, stride) for width, depth, stride in _RESNET18]
    return _genotype(input_size, in_channels, num_classes, stem_width=64, stem_kernel=7, stem_stride=2,
                     stem_pool=True, stages=_stages("xnor", layout, weight_bits=1, activation_bits=1))


def reactnet_a(input_size: int, in_channels: int, num_classes: int) -> Genotype:
    """ReActNet-A: binary MobileNetV1 layout, 3x3 FP stem at stride 2, 13 ReActNet blocks, no FP
    downsampling (duplicate-and-concatenate 1x1), FP classifier (Liu et al., ECCV 2020)."""
    layout = [(64, 1, 1), (128, 2, 2), (256, 2, 2), (512, 6, 2), (1024, 2, 2)]
    return _genotype(input_size, in_channels, num_classes, stem_width=32, stem_kernel=3, stem_stride=2,
                     stages=_stages("reactnet", layout, weight_bits=1, activation_bits=1))


# --- small (28x28 / 32x32) ------------------------------------------------------------------
_SMALL = [(16, 2, 1), (32, 2, 2), (64, 2, 2)]


def xnor_small(input_size: int, in_channels: int, num_classes: int) -> Genotype:
    """XNOR-Net ResNet, small: one basic block (two binary convs) per stage."""
    layout = [(width, 1, stride) for width, _, stride in _SMALL]
    return _genotype(input_size, in_channels, num_classes, stem_width=16,
                     stages=_stages("xnor", layout, weight_bits=1, activation_bits=1))


def bireal_small(input_size: int, in_channels: int, num_classes: int) -> Genotype:
    """Bi-Real Net, small: two Bi-Real blocks per stage."""
    return _genotype(input_size, in_channels, num_classes, stem_width=16, stages=_stages("binary", _SMALL))


def reactnet_small(input_size: int, in_channels: int, num_classes: int) -> Genotype:
    """ReActNet, small: widths double where the stage strides, as in ReActNet-A."""
    layout = [(32, 1, 1), (64, 2, 2), (128, 2, 2)]
    return _genotype(input_size, in_channels, num_classes, stem_width=16,
                     stages=_stages("reactnet", layout, weight_bits=1, activation_bits=1))


def meliusnet_small(input_size: int, in_channels: int, num_classes: int) -> Genotype:
    """MeliusNet, small: dense + improvement blocks, FP MaxPool transitions between stages."""
    layout = [(32, 2, 1), (64, 2, 2), (96, 2, 2)]
    return _genotype(input_size, in_channels, num_classes, stem_width=16,
                     stages=_stages("melius", layout, weight_bits=1, activation_bits=1))


def binarydensenet_small(input_size: int, in_channels: int, num_classes: int) -> Genotype:
    """BinaryDenseNet, small: binary dense layers, FP MaxPool transitions."""
    layout = [(32, 2, 1), (64, 4, 2), (96, 4, 2)]
    return _genotype(input_size, in_channels, num_classes, stem_width=16,
                     stages=_stages("binary_dense", layout, weight_bits=1, activation_bits=1))


_MOBILENET_V2_SMALL = [  # (width, depth, stride, expansion)
    (16, 1, 1, 1), (24, 2, 2, 6), (32, 2, 2, 6), (64, 2, 1, 6)]


def _mobilenet_v2_small(input_size: int, in_channels: int, num_classes: int, bits: int) -> Genotype:
    stages = [dict(block="mbconv", width=width, depth=depth, stride=stride, expansion=expansion,
                   weight_bits=bits, activation_bits=bits)
              for width, depth, stride, expansion in _MOBILENET_V2_SMALL]
    head_bits = 8 if bits == 8 else 32
    return _genotype(input_size, in_channels, num_classes, stem_width=16, stem_bits=head_bits,
                     head_width=128, head_bits=head_bits, stages=stages)


def mobilenetv2_small(input_size: int, in_channels: int, num_classes: int) -> Genotype:
    """MobileNetV2 (float), small: inverted residuals, 1x1 head conv to 128."""
    return _mobilenet_v2_small(input_size, in_channels, num_classes, 32)


def mobilenetv2_int8_small(input_size: int, in_channels: int, num_classes: int) -> Genotype:
    """MobileNetV2 (8 bit), small: every conv and the classifier at 8-bit weights and activations."""
    return _mobilenet_v2_small(input_size, in_channels, num_classes, 8)


def _register(*entries: tuple[GenotypeMaker, int, int, int]) -> dict[str, Baseline]:
    return {make.__name__: Baseline(make.__name__, (make.__doc__ or "").split("\n")[0], make, size, channels, classes)
            for make, size, channels, classes in entries}


BASELINES: dict[str, Baseline] = _register(
    (birealnet18, 224, 3, 1000), (reactnet_a, 224, 3, 1000), (xnor_resnet18, 224, 3, 1000),
    (xnor_small, 28, 1, 10), (bireal_small, 28, 1, 10), (reactnet_small, 28, 1, 10), (meliusnet_small, 28, 1, 10),
    (binarydensenet_small, 28, 1, 10), (mobilenetv2_small, 28, 1, 10), (mobilenetv2_int8_small, 28, 1, 10),
)
SMALL_BASELINES: tuple[str, ...] = tuple(name for name in BASELINES if name.endswith("_small"))


def baseline_genotype(name: str, *, input_size: int | None = None, in_channels: int | None = None,
                      num_classes: int | None = None) -> Genotype:
    """The genotype of baseline `name`; geometry defaults to the one it was designed for."""
    if name not in BASELINES:
        raise UnknownBaseline(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    return BASELINES[name].genotype(input_size, in_channels, num_classes)


def small_baselines(*, input_size: int, in_channels: int, num_classes: int) -> dict[str, Genotype]:
    """Every small reference network for one dataset geometry, by name: what a search evaluates
    next to its trials (same training budget and measurements) and labels on its Pareto front."""
    return {name: baseline_genotype(name, input_size=input_size, in_channels=in_channels, num_classes=num_classes)
            for name in SMALL_BASELINES}
