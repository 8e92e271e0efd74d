"""Engine steps for every quantized layer the search space builds, and the check that none is simulated.

Two ways a block's quantized convs run natively (`quantized.NativeQuantConv`: popcount, int8 GEMM
or direct integer kernels):
- fused: the block becomes a chain of native steps whose epilogues carry its BatchNorm, ReLU and
  residual (`dwsep`, `mbconv` without squeeze-excitation, a quantized stem, the quantized head
  conv): nothing runs in torch;
- hybrid: a copy of the block runs its own forward in torch with every quantized conv and linear
  replaced by its native executor (every other block: xnor, quicknet, melius, binary_dense,
  mbconv with squeeze-excitation, shuffle, a reactnet at 2-8 bits, quantized shortcuts). torch
  then computes only the genuine full-precision glue (BatchNorm, activations, pooling,
  concatenation, additions).

A layer with a full-precision operand (W32Ax or WxA32) is a genuine fp32 layer and stays in torch.
A quantized layer left in torch would be an fp32 *simulation*: `simulated_layers` finds those in
any compiled model, and the engine's name for a measurement lists them, so none stays silent.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from .compiler import register_compiler
from .glue import conv_batchnorm_step, max_pool_step, pooled_classifier_step, relu_step
from .ops import TorchStep, from_torch, frozen_copy, to_torch
from .quantized import NativeQuantConv, NativeQuantLinear


def is_quantized_layer(module: nn.Module) -> bool:
    """A QuantConv2d / QuantLinear whose weights and inputs are both below 32 bits."""
    from bitnas.spaces.layers import QuantConv2d, QuantLinear

    return isinstance(module, (QuantConv2d, QuantLinear)) and module.weight_bits < 32 and module.input_bits < 32


@dataclasses.dataclass
class NativeConvStep:
    """One quantized conv with its fused epilogue (folded BatchNorm, ReLU / ReLU6)."""

    name: str
    layer: NativeQuantConv
    backend: str = "engine"
    reason: str = ""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.layer(x)


class NativeConv(nn.Module):
    """Stands in for a quantized conv inside a block that torch runs: the native executor on a
    batch-1 tensor (channel-last views in, a channels_last view of the result out)."""

    def __init__(self, layer: NativeQuantConv, name: str = ""):
        super().__init__()
        self.layer, self.label = layer, name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[0] != 1:
            raise ValueError("the engine runs batch-1 inputs")
        return to_torch(self.layer(from_torch(x)))

    def extra_repr(self) -> str:
        return f"native {self.layer.path}"


class NativeLinear(nn.Module):
    """Stands in for a quantized linear (the 8-bit classifier) inside a step torch runs."""

    def __init__(self, layer: NativeQuantLinear):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.layer(x.reshape(-1).numpy())).unsqueeze(0)

    def extra_repr(self) -> str:
        return f"native {self.layer.path}"


def with_native_layers(module: nn.Module) -> nn.Module:
    """A frozen copy of `module` whose quantized convs and linears run natively (see the module docstring)."""
    copy = frozen_copy(module)
    if is_quantized_layer(copy):
        return _native(copy)
    for parent in list(copy.modules()):
        for child_name, child in list(parent.named_children()):
            if is_quantized_layer(child):
                setattr(parent, child_name, _native(child))
    return copy


def _native(layer: nn.Module) -> nn.Module:
    from bitnas.spaces.layers import QuantConv2d

    if isinstance(layer, QuantConv2d):
        return NativeConv(NativeQuantConv.from_module(layer))
    return NativeLinear(NativeQuantLinear.from_module(layer))


def hybrid_step(module: nn.Module, name: str, what: str = "block") -> TorchStep:
    """A module run by torch with its quantized layers native; a plain TorchStep where it has none."""
    if not any(is_quantized_layer(m) for m in module.modules()):
        return TorchStep(name=name, module=frozen_copy(module), reason=f"{what}: full-precision operands, genuine fp32")
    return TorchStep(name=name, module=with_native_layers(module), backend="engine+torch",
                     reason=f"{what}: quantized layers native, full-precision glue in torch")


# ---- simulated layers: what no compiled model may keep ---------------------------------------------

def _step_modules(step) -> list[nn.Module]:
    """Every torch module a step runs, its sub-steps' included."""
    found: list[nn.Module] = []
    values = [getattr(step, f.name) for f in dataclasses.fields(step)] if dataclasses.is_dataclass(step) else []
    for value in values:
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, nn.Module):
                found.append(item)
            elif dataclasses.is_dataclass(item) and not isinstance(item, type):
                found.extend(_step_modules(item))
    return found


def simulated_layers(steps: list) -> list[str]:
    """Names of quantized layers that a compiled model runs as fp32 simulations in torch."""
    names = []
    for step in steps:
        for module in _step_modules(step):
            for layer_name, layer in module.named_modules():
                if is_quantized_layer(layer):
                    names.append(f"{step.name}.{layer_name}" if layer_name else step.name)
    return names


# ---- compilers -------------------------------------------------------------------------------------

def _quant_conv(module: nn.Module, name: str) -> list:
    if is_quantized_layer(module):
        return [NativeConvStep(name=name, layer=NativeQuantConv.from_module(module))]
    return [TorchStep(name=name, module=frozen_copy(module), reason="full-precision operand: a genuine fp32 conv")]


def _dwsep(block: nn.Module, name: str) -> list:
    """depthwise -> BN -> ReLU -> pointwise -> BN -> ReLU as two native steps, BN and ReLU fused."""
    if not (is_quantized_layer(block.depthwise) and is_quantized_layer(block.pointwise)):
        return [hybrid_step(block, name)]
    return [NativeConvStep(name=f"{name}.depthwise",
                           layer=NativeQuantConv.from_module(block.depthwise, batchnorm=block.bn1, clamp="relu")),
            NativeConvStep(name=f"{name}.pointwise",
                           layer=NativeQuantConv.from_module(block.pointwise, batchnorm=block.bn2, clamp="relu"))]


@dataclasses.dataclass
class NativeChainStep:
    """Native convs run one after another, the last given the chain's input as its residual where
    `residual` is set: an inverted residual block (expand -> depthwise -> project, + x) with each
    conv's BatchNorm and ReLU6 in its epilogue, so no torch runs between them."""

    name: str
    convs: list[NativeConvStep]
    residual: bool
    backend: str = "engine"
    reason: str = ""

    def parts(self) -> list[NativeConvStep]:
        return self.convs

    def __call__(self, x: np.ndarray) -> np.ndarray:
        value = x
        for conv in self.convs[:-1]:
            value = conv.layer(value)
        return self.convs[-1].layer(value, x if self.residual else None)


def _inverted_residual(block: nn.Module, name: str) -> list:
    """An mbconv block as one chain of native convs; with squeeze-excitation, or an fp32 operand,
    it runs in torch (hybrid)."""
    layers = list(block.body)
    # conv, BN, ReLU6 per conv, the last without its ReLU6 (linear bottleneck); anything else in
    # between (squeeze-excitation) keeps the block hybrid.
    triples = [layers[index:index + 3] for index in range(0, len(layers), 3)]
    chain = len(layers) % 3 == 2 and all(
        is_quantized_layer(part[0]) and isinstance(part[1], nn.BatchNorm2d)
        and (len(part) == 2 or isinstance(part[2], nn.ReLU6)) for part in triples)
    if not chain:
        return [hybrid_step(block, name)]
    steps = [NativeConvStep(name=f"{name}.body.{3 * number}", layer=NativeQuantConv.from_module(
                 part[0], batchnorm=part[1], clamp="relu6" if len(part) == 3 else None))
             for number, part in enumerate(triples)]
    return [NativeChainStep(name=name, convs=steps, residual=block.residual)]


def stem_steps(stem: nn.Sequential) -> list:
    """The stem natively: a quantized conv with its BatchNorm fused, or an fp32 conv and its
    BatchNorm, then its max pool (where it has one); a stem of any other shape runs in torch."""
    layers = list(stem)
    pools = [max_pool_step(layer, f"stem.{index}") for index, layer in enumerate(layers[2:], 2)]
    conv = None
    if len(layers) >= 2 and isinstance(layers[1], nn.BatchNorm2d) and all(pools):
        conv = NativeConvStep(name="stem.0", layer=NativeQuantConv.from_module(layers[0], batchnorm=layers[1])) \
            if is_quantized_layer(layers[0]) else conv_batchnorm_step(layers[0], layers[1], "stem")
    return [conv, *pools] if conv else [TorchStep(name="stem", module=frozen_copy(stem))]


def head_steps(network: nn.Module) -> list:
    """[head conv + BN] -> ReLU -> pool -> classifier: an 8-bit head conv with its BN and the ReLU
    fused into one native step; pool and classifier (native where 8-bit) in one torch step."""
    tail = pooled_classifier_step(network.pool, network.fc, "head") or \
        hybrid_step(nn.Sequential(network.pool, nn.Flatten(1), network.fc), "head", "head")
    if not hasattr(network, "head"):
        return [relu_step(network.head_act, "head_act"), tail]
    conv, bn = network.head
    if is_quantized_layer(conv):
        fused = NativeConvStep(name="head.conv", layer=NativeQuantConv.from_module(conv, batchnorm=bn, clamp="relu"))
        return [fused, tail]
    return [TorchStep(name="head.conv", module=frozen_copy(nn.Sequential(network.head, network.head_act))), tail]


def _hybrid_block(block: nn.Module, name: str) -> list:
    return [hybrid_step(block, name)]


def register() -> None:
    from bitnas.spaces import blocks
    from bitnas.spaces.layers import QuantConv2d

    register_compiler(QuantConv2d)(_quant_conv)
    register_compiler(blocks.DepthwiseSeparableBlock)(_dwsep)
    register_compiler(blocks.InvertedResidualBlock)(_inverted_residual)
    for cls in (blocks.XnorBlock, blocks.QuickNetBlock, blocks.BinaryDenseBlock, blocks.ShuffleBlock):
        register_compiler(cls)(_hybrid_block)


register()

__all__ = ["NativeChainStep", "NativeConv", "NativeConvStep", "NativeLinear", "head_steps", "hybrid_step",
           "is_quantized_layer", "simulated_layers", "stem_steps", "with_native_layers"]
