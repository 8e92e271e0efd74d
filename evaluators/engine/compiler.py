"""compile_model(torch model, input shape) -> EngineModel: a registry of step compilers by module class.

Each registered compiler turns one module into engine steps. A module with no compiler (a block
added to `spaces` later, a 4-bit layer) runs in torch through a `TorchStep` whose reason is logged
and listed in `EngineModel.fallbacks`, so every network keeps working and says what is not packed.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from bitnas.errors import UserError

from .glue import rprelu_step, shortcut_steps
from .kernels import pack_weight_signs
from .ops import BinaryConvStep, ReActStep, TorchStep, frozen_copy

log = logging.getLogger(__name__)

Step = Callable[[np.ndarray], np.ndarray]
StepCompiler = Callable[[nn.Module, str], list]
COMPILERS: dict[type, StepCompiler] = {}


class EngineInputError(UserError):
    """An input whose shape does not match the one the engine model was compiled for."""


class NotCompilable(Exception):
    """Raised by a step compiler when this instance of a known class cannot be packed (the reason)."""


def register_compiler(*classes: type) -> Callable[[StepCompiler], StepCompiler]:
    def add(compiler: StepCompiler) -> StepCompiler:
        for cls in classes:
            COMPILERS[cls] = compiler
        return compiler

    return add


def compile_module(module: nn.Module, name: str) -> list:
    """Steps for one module: its registered compiler (nearest class in the MRO) or torch."""
    for cls in type(module).__mro__:
        compiler = COMPILERS.get(cls)
        if compiler is None:
            continue
        try:
            return compiler(module, name)
        except NotCompilable as reason:
            return [_hybrid_or_fallback(module, name, str(reason), known=True)]
    return [_hybrid_or_fallback(module, name, f"no engine compiler for {type(module).__name__}", known=False)]


def _hybrid_or_fallback(module: nn.Module, name: str, reason: str, *, known: bool):
    """A module no compiler fuses: torch runs it with its quantized layers native where it has any
    (native_blocks.hybrid_step). A known block without quantized layers (a reactnet at W8A32) is
    genuine fp32 in torch; an unknown one is a torch fallback with its reason."""
    from .native_blocks import hybrid_step, is_quantized_layer

    quantized = any(is_quantized_layer(m) for m in module.modules())
    if quantized or known:
        try:
            return hybrid_step(module, name, reason)
        except NotCompilable as why:
            reason = f"{reason}; {why}"
    return _fallback(module, name, reason)


def _fallback(module: nn.Module, name: str, reason: str) -> TorchStep:
    log.info("engine: %s runs in torch: %s", name or type(module).__name__, reason)
    return TorchStep(name=name, module=frozen_copy(module), reason=reason, backend="torch-fallback")


# ---- compilers for the torch containers and full-precision layers --------------------------------

@register_compiler(nn.Sequential)
def _sequential(module: nn.Sequential, name: str) -> list:
    steps: list = []
    for child_name, child in module.named_children():
        steps.extend(compile_module(child, f"{name}.{child_name}" if name else child_name))
    return steps


@register_compiler(nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Identity, nn.AvgPool2d, nn.MaxPool2d)
def _full_precision(module: nn.Module, name: str) -> list:
    if isinstance(module, nn.Identity):
        return []
    if type(module) is not nn.Conv2d and isinstance(module, nn.Conv2d):
        raise NotCompilable(f"{type(module).__name__} is a quantized conv without an engine kernel")
    return [TorchStep(name=name, module=frozen_copy(module))]


# ---- the bitnas blocks ---------------------------------------------------------------------------

def fold_batchnorm(bn: nn.BatchNorm2d | nn.BatchNorm1d) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode BatchNorm as (gain, shift) in float64: bn(z) = gain * z + shift per channel."""
    if bn.running_mean is None or bn.running_var is None:
        raise NotCompilable("BatchNorm without running statistics")
    inv_std = 1.0 / np.sqrt(bn.running_var.detach().double().numpy() + bn.eps)
    weight = bn.weight.detach().double().numpy() if bn.weight is not None else np.ones_like(inv_std)
    bias = bn.bias.detach().double().numpy() if bn.bias is not None else np.zeros_like(inv_std)
    gain = weight * inv_std
    return gain, bias - bn.running_mean.detach().double().numpy() * gain


def _packed_conv(conv: nn.Module, bn: nn.BatchNorm2d, *, name: str, shift: torch.Tensor, input_quantizer: type,
                 shortcut: nn.Module | None) -> BinaryConvStep:
    """A 1-bit conv (sign of input + shift, scaled sign weights) and its BatchNorm as one packed
    step; `shortcut` is added after the BatchNorm (None: nothing, nn.Identity: the input itself)."""
    from bitnas.spaces.quantizers import ScaledSignWeights

    if not isinstance(conv.input_quantizer, input_quantizer) or not isinstance(conv.kernel_quantizer, ScaledSignWeights):
        raise NotCompilable(f"quantizers {type(conv.input_quantizer).__name__}/{type(conv.kernel_quantizer).__name__}"
                            " are not sign/scaled-sign")
    kernel, stride, padding = conv.kernel_size[0], conv.stride[0], conv.padding[0]
    if (conv.kernel_size[1], conv.stride[1], conv.padding[1]) != (kernel, stride, padding) or conv.groups != 1 \
            or conv.dilation != (1, 1) or conv.bias is not None or conv.padding_mode != "zeros":
        raise NotCompilable("only square, ungrouped, undilated, bias-free, zero-padded binary convs are packed")
    with torch.no_grad():
        weight = conv.weight.detach()
        # The scale exactly as torch's quantizer computes it (so a +-1 sum times it matches torch).
        quantized = conv.kernel_quantizer(weight)
        alpha = quantized.abs().amax(dim=(1, 2, 3)).double().numpy()
        signs = (weight >= 0).numpy()
    gain, bias = fold_batchnorm(bn)
    if shortcut is None:
        kind, module = "none", None
    elif isinstance(shortcut, nn.Identity):
        kind, module = "identity", None
    else:  # a downsampling shortcut; a binary one's 1x1 conv runs natively inside it
        from .native_blocks import with_native_layers

        kind, module = "module", with_native_layers(shortcut)
    return BinaryConvStep(
        name=name, shift=shift.detach().reshape(-1).float().numpy().copy(), weights=pack_weight_signs(signs),
        kernel=kernel, stride=stride, padding=padding, in_channels=conv.in_channels, scale=alpha * gain, bias=bias,
        shortcut=kind, shortcut_module=module,
        shortcut_native=shortcut_steps(module, f"{name}.shortcut") if module is not None else None)


def _binary_conv_block(block: nn.Module, name: str) -> list:
    from bitnas.spaces.blocks import DownsampleShortcut
    from bitnas.spaces.quantizers import SignSTE

    if not isinstance(block.shortcut, (nn.Identity, DownsampleShortcut)):
        raise NotCompilable(f"shortcut {type(block.shortcut).__name__} is unknown")
    return [_packed_conv(block.conv, block.bn, name=name, shift=block.threshold.shift, input_quantizer=SignSTE,
                         shortcut=block.shortcut)]


def _react_block(block: nn.Module, name: str) -> list:
    """sign(x - threshold) is sign(x + shift) with shift = -threshold: the same float32 sum."""
    from bitnas.spaces.quantizers import RSign

    for conv in (block.conv_k, *block.convs_1x1):
        if not isinstance(conv.input_quantizer, RSign):
            raise NotCompilable(f"{type(conv.input_quantizer).__name__} inputs are not 1-bit RSign")
    conv_k = _packed_conv(block.conv_k, block.bn_k, name=f"{name}.conv_k", shift=-block.conv_k.input_quantizer.threshold,
                          input_quantizer=RSign, shortcut=block.shortcut_k)
    convs_1x1 = [_packed_conv(conv, bn, name=f"{name}.convs_1x1.{i}", shift=-conv.input_quantizer.threshold,
                              input_quantizer=RSign, shortcut=None)
                 for i, (conv, bn) in enumerate(zip(block.convs_1x1, block.bns_1x1))]
    from .native_blocks import hybrid_step  # imports this module: here, not at the top

    # A width change at stride 1: an fp32 or a binary (1-bit 1x1, `downsample: binary`) shortcut
    # conv, the binary one's conv native like any quantized layer.
    shortcut = None if isinstance(block.shortcut_1x1, nn.Identity) else \
        hybrid_step(block.shortcut_1x1, f"{name}.shortcut_1x1", "shortcut")
    return [ReActStep(name=name, conv_k=conv_k, act_k=rprelu_step(block.act_k, f"{name}.act_k"),
                      convs_1x1=convs_1x1, shortcut_1x1=shortcut, act_1x1=rprelu_step(block.act_1x1, f"{name}.act_1x1"))]


def _network(network: nn.Module, name: str) -> list:
    if not all(hasattr(network, part) for part in ("stem", "stages", "head_act", "pool", "fc")):
        raise NotCompilable("network without stem/stages/head_act/pool/fc")
    # `head` (a 1x1 conv before the pool) exists only when the genotype asks for one.
    from .native_blocks import head_steps, stem_steps

    return [*stem_steps(network.stem), *compile_module(network.stages, "stages"), *head_steps(network)]


def _register_bitnas_blocks() -> None:
    # Imported here, not at module top, so the registry works for models built by any version of
    # spaces; a block class that disappears simply falls back to torch.
    from bitnas.spaces import blocks, builder

    register_compiler(blocks.BinaryConvBlock)(_binary_conv_block)
    register_compiler(blocks.ReActBlock)(_react_block)
    register_compiler(builder.Network)(_network)
    register_compiler(blocks.FloatConvBlock)(_full_precision_block)


def _full_precision_block(block: nn.Module, name: str) -> list:
    return [TorchStep(name=name, module=frozen_copy(block))]


_register_bitnas_blocks()


# ---- the compiled model --------------------------------------------------------------------------

class EngineModel:
    """A compiled network: `model(x)` with x of shape (C, H, W) or (N, C, H, W) returns logits."""

    def __init__(self, steps: list, input_shape: tuple[int, int, int]):
        self.steps = steps
        self.input_shape = tuple(input_shape)

    @property
    def fallbacks(self) -> list[tuple[str, str]]:
        """(step name, reason) for each block the engine could not pack and runs in torch."""
        return [(step.name, step.reason) for step in self.steps if step.backend == "torch-fallback"]

    @property
    def packed_share(self) -> float:
        """Share of steps that run in the packed engine (hybrid steps, native layers in torch glue, included)."""
        return sum(step.backend in ("engine", "engine+torch") for step in self.steps) / max(1, len(self.steps))

    @property
    def simulated(self) -> list[str]:
        """Quantized layers (both operands below 32 bits) that run as fp32 simulations in torch;
        the engine is meant to leave none."""
        from .native_blocks import simulated_layers

        return simulated_layers(self.steps)

    def summary(self) -> list[dict]:
        return [{"step": step.name, "backend": step.backend, "reason": step.reason} for step in self.steps]

    def run_one(self, x: np.ndarray) -> np.ndarray:
        """One image, (C, H, W) float32 -> logits (classes,)."""
        return run_steps(self.steps, np.ascontiguousarray(np.asarray(x, dtype=np.float32).transpose(1, 2, 0)))

    def __call__(self, x) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        x = np.asarray(x, dtype=np.float32)
        if x.shape[-3:] != self.input_shape or x.ndim not in (3, 4):
            raise EngineInputError(f"engine input has shape {tuple(x.shape)}; this model was compiled for "
                                   f"(C, H, W) = {self.input_shape} or a batch (N, C, H, W) of it")
        if x.ndim == 3:
            return self.run_one(x)
        return np.stack([self.run_one(image) for image in x])


def run_steps(steps: list, value):
    """Run `steps` on a (H, W, C) array: native steps on channel-last numpy arrays, torch steps on
    NCHW tensors, converting only where the kind changes. Returns a numpy array."""
    from .ops import from_torch, to_torch

    for step in steps:
        if getattr(step, "takes_torch", False):
            value = step.run_torch(to_torch(value) if isinstance(value, np.ndarray) else value)
        else:
            value = step(from_torch(value) if isinstance(value, torch.Tensor) else value)
    return from_torch(value) if isinstance(value, torch.Tensor) else value


def compile_model(model: nn.Module, input_shape: Iterable[int]) -> EngineModel:
    """Compile a trained bitnas model (eval-mode semantics: BatchNorm uses running statistics)."""
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise EngineInputError(f"input_shape must be (C, H, W) with positive sizes, got {shape}")
    return EngineModel(compile_module(model, ""), shape)


__all__ = ["COMPILERS", "EngineInputError", "EngineModel", "NotCompilable", "compile_model", "compile_module",
           "register_compiler", "run_steps"]
