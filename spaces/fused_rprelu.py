"""RPReLU for training in one pass each way: ReActNet's shift, per-channel PReLU, shift as one
autograd function over numba kernels.

Why: PyTorch runs RPReLU as six operators forward and backward (two broadcast adds, `prelu`, and
their backwards with three per-channel reductions), and `prelu`'s backward alone was 11% of a
reactnet_small training step (about 2.8 ms per call on a 64 x 32 x 28 x 28 activation, one
thread). One loop forward and one backward, which also sums the three parameter gradients as it
goes, takes about a fifth of their time (benchmarks/training_speed.py measures the whole step).

The values are those of the plain modules; the parameter gradients are sums in float32 in another
order, so they agree to rounding, not bit for bit (tests/test_fused_rprelu.py). CPU float32 passes
take this path when they train with gradients or record none at all (validation, BatchNorm
recalibration: the forward loop alone, the plain modules' values, and one pass over the activation
instead of three); a pass in eval mode that records gradients (the zero-cost proxies), the ONNX
tracer and CUDA take the plain operators.
"""

from __future__ import annotations

import contextlib
from functools import lru_cache

import torch

from .fast_path import FastPathSwitch

# `plain_rprelu()` turns the fused path off: the benchmark that measures what it saves, and tests.
_FUSED = FastPathSwitch()


def plain_rprelu() -> contextlib.AbstractContextManager:
    """Within this block RPReLU trains through the plain PyTorch operators."""
    return _FUSED.off()


def takes_fused_path(module: torch.nn.Module, x: torch.Tensor) -> bool:
    return (_FUSED.on and (module.training or not torch.is_grad_enabled()) and not torch.jit.is_tracing()
            and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4)


@lru_cache(maxsize=None)
def _kernels():
    """Compiled on first use (cached on disk by numba), so importing the search space stays cheap."""
    import numba
    import numpy as np

    # Forward without fastmath: a fused multiply-add would round `a * z + shift_out` once instead of
    # twice and the values would no longer be the plain modules'.
    @numba.njit(cache=True)
    def forward(x, shift_in, slope, shift_out, y):
        batch, channels, pixels = x.shape
        for n in range(batch):
            for c in range(channels):
                s_in, a, s_out = shift_in[c], slope[c], shift_out[c]
                for i in range(pixels):
                    z = x[n, c, i] + s_in
                    y[n, c, i] = (z if z > 0 else a * z) + s_out

    # fastmath lets the per-channel sums vectorise (reassociated float32 adds); branch-free
    # selects keep the loop free of jumps.
    @numba.njit(cache=True, fastmath=True)
    def backward(grad, x, shift_in, slope, grad_x, grad_shift_in, grad_slope, grad_shift_out):
        batch, channels, pixels = x.shape
        for c in range(channels):
            s_in, a = shift_in[c], slope[c]
            sum_in, sum_slope, sum_out = np.float32(0), np.float32(0), np.float32(0)
            for n in range(batch):
                for i in range(pixels):
                    z = x[n, c, i] + s_in
                    g = grad[n, c, i]
                    positive = z > 0
                    through = g if positive else a * g
                    grad_x[n, c, i] = through
                    sum_in += through
                    sum_slope += 0 if positive else g * z
                    sum_out += g
            grad_shift_in[c], grad_slope[c], grad_shift_out[c] = sum_in, sum_slope, sum_out

    return forward, backward


def _flat(t: torch.Tensor) -> "numpy.ndarray":  # noqa: F821 - annotation only
    return t.detach().reshape(t.shape[0], t.shape[1], -1).numpy()


def _vector(t: torch.Tensor) -> "numpy.ndarray":  # noqa: F821
    return t.detach().reshape(-1).contiguous().numpy()


class _FusedRPReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, shift_in: torch.Tensor, slope: torch.Tensor, shift_out: torch.Tensor):
        x = x.contiguous()
        y = torch.empty_like(x)
        _kernels()[0](_flat(x), _vector(shift_in), _vector(slope), _vector(shift_out), _flat(y))
        ctx.save_for_backward(x, shift_in, slope)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, shift_in, slope = ctx.saved_tensors
        grad = grad.contiguous()
        channels = x.shape[1]
        grad_x = torch.empty_like(x)
        grad_shift_in, grad_slope, grad_shift_out = (torch.empty(channels) for _ in range(3))
        _kernels()[1](_flat(grad), _flat(x), _vector(shift_in), _vector(slope), _flat(grad_x),
                      grad_shift_in.numpy(), grad_slope.numpy(), grad_shift_out.numpy())
        return (grad_x, grad_shift_in.view_as(shift_in), grad_slope.view_as(slope),
                grad_shift_out.view(1, channels, 1, 1))


def fused_rprelu(x: torch.Tensor, shift_in: torch.Tensor, slope: torch.Tensor, shift_out: torch.Tensor) -> torch.Tensor:
    """prelu(x + shift_in, slope) + shift_out; shifts (1, C, 1, 1), slope (C,)."""
    return _FusedRPReLU.apply(x, shift_in, slope, shift_out)


__all__ = ["fused_rprelu", "plain_rprelu", "takes_fused_path"]
