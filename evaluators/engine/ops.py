"""The steps an engine model runs, in order. Each maps one activation to the next.

Activations between steps are batch-1, channel-last numpy arrays (H, W, C) float32; the last step
returns a 1-D vector of logits. Full-precision layers run in torch on a zero-copy channels_last
view of the same memory, so they compute exactly torch's function.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import ClassVar

import numba
import numpy as np
import torch
from torch import nn

from .fused import SHORTCUT_AVG_POOL, SHORTCUT_IDENTITY, react_block
from .kernels import BLOCK_OUTPUTS, binary_conv2d_prepared, pack_activations, packed_words, prepare_weights

_NO_RESIDUAL = np.zeros((0, 0, 0), dtype=np.float32)


def to_torch(x: np.ndarray) -> torch.Tensor:
    """(H, W, C) numpy -> (1, C, H, W) contiguous tensor. A copy: torch's batch-1 layers ran up to 2x
    slower on a channels_last view (mobilenetv2_small: 8.1 ms against 4.2 ms in plain NCHW)."""
    return torch.from_numpy(x).permute(2, 0, 1).unsqueeze(0).contiguous()


def from_torch(y: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) or (1, F) tensor -> (H, W, C) or (F,) float32 numpy, contiguous."""
    if y.dim() == 4:
        return np.ascontiguousarray(y[0].permute(1, 2, 0).numpy(), dtype=np.float32)
    return np.ascontiguousarray(y.reshape(-1).numpy(), dtype=np.float32)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A private eval-mode copy, so later training of the source model cannot change the engine."""
    clone = copy.deepcopy(module).eval()
    for parameter in clone.parameters():
        parameter.requires_grad_(False)
    return clone


@dataclass
class TorchStep:
    """Runs a module in torch: full-precision layers by design, or a block the engine cannot run."""

    name: str
    module: nn.Module
    reason: str = "full-precision layer"
    backend: str = "torch"
    # The engine hands this step torch tensors (`run_torch`), so consecutive torch steps pass
    # tensors on without a round trip through numpy (`compiler.run_steps`).
    takes_torch: ClassVar[bool] = True

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return from_torch(self.run_torch(to_torch(x)))

    def run_torch(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.module(x)


@dataclass
class BinaryConvStep:
    """threshold -> sign -> packed XNOR-popcount conv -> scale and BatchNorm (folded) -> + shortcut."""

    name: str
    shift: np.ndarray            # (Cin,) float32: the learnable threshold
    weights: np.ndarray          # (k*k, Cw, Cout) uint64
    kernel: int
    stride: int
    padding: int
    in_channels: int
    scale: np.ndarray            # (Cout,) float64: weight scale x BN gain
    bias: np.ndarray             # (Cout,) float64: BN shift
    shortcut: str                # "identity", "module" or "none"
    shortcut_module: nn.Module | None = None
    # The shortcut module computed natively (glue.shortcut_steps, from the module's own tensors);
    # None: torch runs the module.
    shortcut_native: list | None = None
    backend: str = "engine"
    reason: str = ""
    _packed: dict = field(default_factory=dict, repr=False)
    _prepared: tuple = field(default=(None, None), repr=False)

    def prepared_weights(self) -> np.ndarray:
        """The kernel layout of `weights`, derived once (and again if `weights` is replaced, as
        loading a packed file does): `weights` stays the stored format."""
        source, prepared = self._prepared
        if source is not self.weights:
            prepared = prepare_weights(self.weights)
            self._prepared = (self.weights, prepared)
        return prepared

    def output_size(self, size: int) -> int:
        return (size + 2 * self.padding - self.kernel) // self.stride + 1

    def pack(self, x: np.ndarray) -> np.ndarray:
        height, width, _ = x.shape
        key = (height, width)
        packed = self._packed.get(key)
        if packed is None:  # reused between calls: the engine allocates its packed buffers once
            packed = self._packed[key] = np.empty((height, width, packed_words(self.in_channels)), dtype=np.uint64)
        pack_activations(x, self.shift, packed)
        return packed

    def convolve(self, packed: np.ndarray, residual: np.ndarray | None, out: np.ndarray | None = None,
                 out_first: int = 0) -> np.ndarray:
        """The conv's outputs, in a new array, or written into channels out_first.. of `out`."""
        if out is None:
            height, width, _ = packed.shape
            out = np.empty((self.output_size(height), self.output_size(width), self.weights.shape[2]), np.float32)
        binary_conv2d_prepared(packed, self.prepared_weights(), self.kernel, self.stride, self.padding,
                               self.in_channels, self.scale, self.bias, _NO_RESIDUAL if residual is None else residual,
                               residual is not None, out, out_first=out_first)
        return out

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.shortcut == "identity":
            residual = x
        elif self.shortcut == "module" and self.shortcut_native:
            residual = x
            for step in self.shortcut_native:
                residual = step(residual)
        elif self.shortcut == "module":
            with torch.inference_mode():
                residual = from_torch(self.shortcut_module(to_torch(x)))
        else:
            residual = None
        return self.convolve(self.pack(x), residual)


@dataclass
class ReActStep:
    """A ReActNet block: RSign -> packed k x k conv -> BN + shortcut -> RPReLU, then one packed 1x1
    conv per copy (each with its own RSign threshold) -> BN + the shared residual, concatenated,
    -> RPReLU. The RSign thresholds are the packed convs' shifts; RPReLU and any full-precision
    shortcut run in torch, so they compute exactly torch's function."""

    name: str
    conv_k: BinaryConvStep           # its shortcut: identity, or the strided AvgPool as a module
    act_k: TorchStep
    convs_1x1: list[BinaryConvStep]  # shortcut "none": the residual is added here, shared by all copies
    shortcut_1x1: TorchStep | None   # None: identity
    act_1x1: TorchStep
    backend: str = "engine"
    reason: str = ""
    # (shortcut kind, pool) where the block runs as one native call on one thread, else None
    # (`_fused_shape`); its parts' kinds are fixed at compile time, so this is decided once.
    _fused: tuple | None = field(init=False, default=None, repr=False)
    # `react_block`'s arguments after x, per input shape: building the tuple cost 2.5-4.7 us per
    # call, a tenth of a small block's time. Cleared by `numbers_loaded`.
    _arguments: dict = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._fused = self._fused_shape()

    def numbers_loaded(self) -> None:
        """The parts' numbers were replaced (a packed file's load): lay the fused arguments out again."""
        self._arguments.clear()

    def parts(self) -> list:
        """The sub-steps in a fixed order (the packed file stores them by position)."""
        return [self.conv_k, self.act_k, *self.convs_1x1, *([self.shortcut_1x1] if self.shortcut_1x1 else []),
                self.act_1x1]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self._fused is not None and numba.get_num_threads() == 1:
            return react_block(*self._fused_arguments(x))
        y = self.act_k(self.conv_k(x))
        residual = y if self.shortcut_1x1 is None else self.shortcut_1x1(y)
        # The copies write straight into their channels of the concatenated output (a separate
        # np.concatenate copied 784 x 48 floats, ~11 us, at the first stage of a 28x28 network).
        widths = [conv.weights.shape[2] for conv in self.convs_1x1]
        out = np.empty((*y.shape[:2], sum(widths)), dtype=np.float32)
        for conv, first in zip(self.convs_1x1, np.cumsum([0, *widths[:-1]]).tolist()):
            conv.convolve(conv.pack(y), residual, out, first)
        return self.act_1x1(out)

    def _fused_arguments(self, x: np.ndarray) -> tuple:
        """`fused.react_block`'s arguments for this block, laid out once per input shape."""
        rest = self._arguments.get(x.shape)
        if rest is None:
            shortcut, pool = self._fused
            conv_k = self.conv_k
            out_w = conv_k.output_size(x.shape[1])
            copies = self.convs_1x1
            rest = self._arguments[x.shape] = (
                conv_k.shift, conv_k.prepared_weights(), _padded_outputs(conv_k.weights.shape[2]), conv_k.kernel,
                conv_k.stride, conv_k.padding, conv_k.scale, conv_k.bias, shortcut, pool, self.act_k._tiled(out_w),
                tuple(conv.shift for conv in copies), tuple(conv.prepared_weights() for conv in copies),
                _padded_outputs(copies[0].weights.shape[2]), tuple(conv.scale for conv in copies),
                tuple(conv.bias for conv in copies), self.act_1x1._tiled(out_w))
        return (np.ascontiguousarray(x, dtype=np.float32), *rest)

    def _fused_shape(self) -> tuple | None:
        """(shortcut kind, pool) for `fused.react_block`, or None where the block takes the steps (a
        1x1 shortcut conv, an activation or a downsampling shortcut that is not native, copies of
        different widths)."""
        from .glue import NativeAvgPool, NativeRPReLU

        conv_k = self.conv_k
        if conv_k.shortcut == "identity":
            shortcut, pool = SHORTCUT_IDENTITY, (1, 1, 0)
        elif conv_k.shortcut == "module" and conv_k.shortcut_native and len(conv_k.shortcut_native) == 1 \
                and isinstance(conv_k.shortcut_native[0], NativeAvgPool):
            kernel, stride, ceil = conv_k.shortcut_native[0]._numbers
            shortcut, pool = SHORTCUT_AVG_POOL, (kernel, stride, int(ceil))
        else:
            return None
        if self.shortcut_1x1 is not None or type(self.act_k) is not NativeRPReLU \
                or type(self.act_1x1) is not NativeRPReLU:
            return None
        if len({conv.weights.shape[2] for conv in self.convs_1x1}) != 1:
            return None
        return shortcut, pool


def _padded_outputs(outputs: int) -> int:
    """Output channels rounded up to the kernels' 16-output blocks (prepare_weights' row length)."""
    return -(-outputs // BLOCK_OUTPUTS) * BLOCK_OUTPUTS


__all__ = ["BinaryConvStep", "ReActStep", "TorchStep", "from_torch", "frozen_copy", "to_torch"]
