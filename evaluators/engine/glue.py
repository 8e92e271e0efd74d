"""Native steps for the full-precision glue between packed convs: RPReLU, the head's ReLU, the
global-average-pool + fp32 classifier tail, an fp32 stem conv with its BatchNorm, the average
pool of ReActNet's strided shortcut, and the stem's max pool.

Why: run in torch, each of these small per-channel ops cost 0.1-0.2 ms at batch 1 (a tensor
conversion each way, dispatch, inference mode) while the binary conv beside it took 0.03-0.26 ms;
in `reactnet_small` the glue was half the measured latency, so narrowing the network (pruning, a
smaller width choice) hardly moved it. Here each is one numba pass over the (H, W, C) activation.

Each step is a `TorchStep` that keeps its torch module: the module's parameters are what a packed
file saves and loads (the format is unchanged); the step derives its arrays from them once and
again after every `load_state_dict` on the module (a post-load hook), so loading new numbers into
the module is all a load needs. RPReLU and ReLU compute torch's float32 function operation for
operation (`fastmath=False`: no fused multiply-adds), so they agree bit for bit, and so does the
max pool (a maximum does not round); the pooled classifier, the stem conv and the average pool sum
in another order than torch (agreement to float32 rounding).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from torch import nn

from .glue_kernels import (ROW_KERNEL_MAX_INPUTS, _avg_pool, _conv_affine, _conv_affine_rows, _max_pool, _pool_linear,
                           _relu, _rprelu, pooled_size)
from .ops import TorchStep, frozen_copy


def _square(value) -> bool:
    """Whether a pool's size, stride or padding (one int or a pair) is the same along both sides."""
    return isinstance(value, int) or (len(value) == 2 and value[0] == value[1])


def _single(value) -> int:
    """A square pool's size, stride or padding, given as one int or a pair."""
    return value if isinstance(value, int) else value[0]


def _vector(tensor) -> np.ndarray:
    """A (1, C, 1, 1) or (C,) parameter as a (C,) float32 numpy view (no copy)."""
    return tensor.detach().numpy().reshape(-1)


@dataclass
class _NativeGlue(TorchStep):
    """A TorchStep computed natively from numbers derived once from its module: at construction,
    and again whenever numbers are loaded into the module (a packed file's load). Reading the
    module's tensors on every call cost ~25 us, more than the ops themselves."""

    backend: str = "engine"
    takes_torch: ClassVar[bool] = False
    _numbers: tuple = field(default=(), repr=False)
    # Numbers laid out for one input width (`per_width`), derived from `_numbers` when first needed.
    _per_width: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._numbers = self.derive()
        # On every submodule: the module may be made of a larger module's children (a shortcut's
        # conv and BatchNorm), and a load into that larger module runs the children's hooks only.
        for module in self.module.modules():
            module.register_load_state_dict_post_hook(self._reload)

    def _reload(self, module: nn.Module, incompatible_keys) -> None:
        self._numbers = self.derive()
        self._per_width.clear()  # laid out from the old numbers

    def per_width(self, width: int, lay_out) -> tuple:
        """`lay_out(width)`, computed once per width and again after a load."""
        laid_out = self._per_width.get(width)
        if laid_out is None:
            laid_out = self._per_width[width] = lay_out(width)
        return laid_out

    def derive(self) -> tuple:
        raise NotImplementedError


@dataclass
class NativeRPReLU(_NativeGlue):
    """ReActNet's RPReLU (shift, per-channel PReLU, shift) on the channel-last activation."""

    reason: str = "RPReLU, native"

    def derive(self) -> tuple:
        module = self.module
        return _vector(module.shift_in.shift), _vector(module.prelu.weight), _vector(module.shift_out.shift)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x)  # a no-op for the engine's own outputs
        out = np.empty_like(x)
        _rprelu(x, *self._tiled(x.shape[1]), out)
        return out

    def _tiled(self, width: int) -> tuple:
        """The parameters repeated along a row of `width` pixels."""
        return self.per_width(width, lambda w: tuple(np.tile(v, w) for v in self._numbers))


@dataclass
class NativeReLU(_NativeGlue):
    reason: str = "ReLU, native"

    def derive(self) -> tuple:
        return ()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = np.empty_like(x)
        _relu(x, out)
        return out


@dataclass
class NativePooledClassifier(_NativeGlue):
    """Global average pool, flatten, fp32 linear: (H, W, C) -> logits (classes,)."""

    reason: str = "pool and fp32 classifier, native"

    def derive(self) -> tuple:
        fc = self.module[2]
        bias = _vector(fc.bias) if fc.bias is not None else np.zeros(fc.out_features, dtype=np.float32)
        return fc.weight.detach().numpy(), bias

    def __call__(self, x: np.ndarray) -> np.ndarray:
        weight, bias = self._numbers
        out = np.empty(weight.shape[0], dtype=np.float32)
        _pool_linear(x, weight, bias, out)
        return out


@dataclass
class NativeAvgPool(_NativeGlue):
    """An unpadded average pool (ceil_mode windows clipped at the border, as torch divides them)."""

    reason: str = "average pool, native"

    def derive(self) -> tuple:
        pool = self.module
        return _single(pool.kernel_size), _single(pool.stride), bool(pool.ceil_mode)  # square: checked by avg_pool_step

    def __call__(self, x: np.ndarray) -> np.ndarray:
        kernel, stride, ceil = self._numbers
        out = np.empty((pooled_size(x.shape[0], kernel, stride, ceil), pooled_size(x.shape[1], kernel, stride, ceil),
                        x.shape[2]), dtype=np.float32)
        _avg_pool(x, kernel, stride, out)
        return out


@dataclass
class NativeMaxPool(_NativeGlue):
    """A square max pool, padded as torch pads it (with -inf), floor mode: the stem's 3x3 / 2 pool.
    In torch it cost more than the whole first stage it shrinks: pooled, reactnet_small measured
    1.39x its latency with the pool in torch, 0.62x natively (benchmarks/stem_pool.py)."""

    reason: str = "max pool, native"

    def derive(self) -> tuple:
        pool = self.module  # square: checked by max_pool_step
        return _single(pool.kernel_size), _single(pool.stride), _single(pool.padding)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        kernel, stride, padding = self._numbers
        out = np.empty((pooled_size(x.shape[0] + 2 * padding, kernel, stride, False),
                        pooled_size(x.shape[1] + 2 * padding, kernel, stride, False), x.shape[2]), dtype=np.float32)
        _max_pool(x, kernel, stride, padding, out)
        return out


@dataclass
class NativeConvBatchNorm(_NativeGlue):
    """An fp32 conv (square, ungrouped, zero-padded) followed by its BatchNorm, in eval mode."""

    reason: str = "fp32 conv and BatchNorm, native"
    _scratch: dict = field(default_factory=dict, repr=False)

    def derive(self) -> tuple:
        """(k, k, Cin, Cout) kernel, gain and shift (the BatchNorm and any conv bias folded)."""
        from .compiler import fold_batchnorm

        conv, bn = self.module[0], self.module[1]
        gain, shift = fold_batchnorm(bn)
        if conv.bias is not None:  # bn(conv + b) = gain * conv + (gain * b + shift)
            shift = shift + gain * conv.bias.detach().double().numpy()
        kernel = np.ascontiguousarray(conv.weight.detach().numpy().transpose(2, 3, 1, 0), dtype=np.float32)
        return kernel, gain.astype(np.float32), shift.astype(np.float32), conv.stride[0], conv.padding[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        kernel, gain, shift, stride, padding = self._numbers
        size = lambda n: (n + 2 * padding - kernel.shape[0]) // stride + 1  # noqa: E731
        out = np.empty((size(x.shape[0]), size(x.shape[1]), kernel.shape[3]), dtype=np.float32)
        if stride == 1 and kernel.shape[2] <= ROW_KERNEL_MAX_INPUTS:
            rows, gains, shifts = self._tiled(out.shape[1])
            spread = self._scratch.get(x.shape)
            if spread is None:  # reused between calls, as the packed buffers are
                columns = out.shape[1] + kernel.shape[0] - 1
                spread = self._scratch[x.shape] = np.empty((x.shape[0], x.shape[2], columns * kernel.shape[3]),
                                                           dtype=np.float32)
            _conv_affine_rows(x, rows, gains, shifts, spread, padding, out)
        else:
            _conv_affine(x, kernel, stride, padding, gain, shift, out)
        return out

    def _tiled(self, out_w: int) -> tuple:
        """Kernel, gain and shift repeated along an output row of `out_w` pixels."""
        kernel, gain, shift = self._numbers[:3]
        return self.per_width(out_w, lambda w: (np.ascontiguousarray(np.tile(kernel, (1, 1, 1, w))), np.tile(gain, w),
                                                np.tile(shift, w)))


def conv_batchnorm_step(conv: nn.Module, bn: nn.Module, name: str, *, share: bool = False) -> TorchStep | None:
    """An fp32 conv + BatchNorm natively; None where the conv is not a plain square zero-padded one.
    `share`: compute from these very modules (a step's own frozen copy) instead of a copy of them."""
    square = conv.kernel_size[0] == conv.kernel_size[1] and conv.stride[0] == conv.stride[1] \
        and conv.padding[0] == conv.padding[1]
    if not (type(conv) is nn.Conv2d and isinstance(bn, nn.BatchNorm2d) and square and conv.groups == 1
            and conv.dilation == (1, 1) and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple)
            and bn.running_mean is not None):
        return None
    pair = nn.Sequential(conv, bn)
    return NativeConvBatchNorm(name=name, module=pair if share else frozen_copy(pair))


def max_pool_step(module: nn.Module, name: str) -> TorchStep | None:
    """A square, undilated, floor-mode max pool natively; None for any other."""
    if type(module) is not nn.MaxPool2d:
        return None
    if not (all(_square(v) for v in (module.kernel_size, module.stride, module.padding))
            and module.dilation in (1, (1, 1)) and not module.ceil_mode and not module.return_indices
            and 2 * _single(module.padding) <= _single(module.kernel_size)):  # torch's own limit: no window all padding
        return None
    return NativeMaxPool(name=name, module=frozen_copy(module))


def avg_pool_step(module: nn.Module, name: str, *, share: bool = False) -> TorchStep | None:
    """An unpadded square average pool natively; None for any other pooling."""
    if type(module) is not nn.AvgPool2d:
        return None
    if not (_square(module.kernel_size) and _square(module.stride) and module.padding in (0, (0, 0))
            and module.divisor_override is None):
        return None
    return NativeAvgPool(name=name, module=module if share else frozen_copy(module))


def shortcut_steps(shortcut: nn.Module, name: str) -> list | None:
    """Native steps for a downsampling shortcut that compute from `shortcut`'s own modules (so a
    packed file's load into it reaches them): an average pool, or Bi-Real's AvgPool -> fp32 1x1
    conv -> BatchNorm. None for any other shortcut (it stays in torch)."""
    from bitnas.spaces.blocks import DownsampleShortcut

    if type(shortcut) is nn.AvgPool2d:
        pool = avg_pool_step(shortcut, f"{name}.pool", share=True)
        return [pool] if pool else None
    if type(shortcut) is not DownsampleShortcut:
        return None
    pool = [] if isinstance(shortcut.pool, nn.Identity) else [avg_pool_step(shortcut.pool, f"{name}.pool", share=True)]
    conv = conv_batchnorm_step(shortcut.conv, shortcut.bn, f"{name}.conv", share=True)
    steps = [*pool, conv]
    return steps if all(steps) else None


def rprelu_step(module: nn.Module, name: str) -> TorchStep:
    """RPReLU natively; any other activation module stays in torch."""
    from bitnas.spaces.layers import RPReLU

    if type(module) is RPReLU:
        return NativeRPReLU(name=name, module=frozen_copy(module))
    return TorchStep(name=name, module=frozen_copy(module))


def relu_step(module: nn.Module, name: str) -> TorchStep:
    if type(module) is nn.ReLU:
        return NativeReLU(name=name, module=frozen_copy(module))
    return TorchStep(name=name, module=frozen_copy(module))


def pooled_classifier_step(pool: nn.Module, fc: nn.Module, name: str) -> TorchStep | None:
    """The tail natively when it is a global average pool and a plain fp32 linear; None otherwise."""
    global_pool = isinstance(pool, nn.AdaptiveAvgPool2d) and pool.output_size in (1, (1, 1))
    if not (global_pool and type(fc) is nn.Linear):
        return None
    return NativePooledClassifier(name=name, module=frozen_copy(nn.Sequential(pool, nn.Flatten(1), fc)),
                                  reason="head: pool and fp32 classifier, native")


__all__ = ["NativeAvgPool", "NativeConvBatchNorm", "NativePooledClassifier", "NativeRPReLU", "NativeReLU",
           "avg_pool_step", "conv_batchnorm_step", "pooled_classifier_step", "relu_step", "rprelu_step",
           "shortcut_steps"]
