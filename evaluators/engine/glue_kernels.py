"""The numba passes behind the native glue steps (glue.py), in their own module so that the fused
ReActNet block (fused.py) can call them without importing the steps.

RPReLU and ReLU compute torch's float32 function operation for operation (`fastmath=False`: no
fused multiply-adds), so they agree bit for bit; the pooled classifier, the stem conv and the
average pool sum in another order than torch (agreement to float32 rounding).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# An fp32 conv at stride 1 with at most this many input channels (a stem on grey or RGB images)
# runs row by row (`_conv_affine_rows`); a wider one (a shortcut's 1x1) has enough work per pixel.
ROW_KERNEL_MAX_INPUTS = 4


@njit(cache=True, fastmath=False)
def _rprelu(x, shift_in, slope, shift_out, out):
    """RPReLU on (H, W, C) row by row, each row one run of W * C with the parameters tiled along it
    (W * C), so the loop vectorises for any C (per pixel, C = 36 left a scalar tail)."""
    height, width, channels = x.shape
    rows = x.reshape(height, width * channels)
    results = out.reshape(height, width * channels)
    for i in range(height):
        for j in range(width * channels):
            z = rows[i, j] + shift_in[j]
            results[i, j] = (z if z > 0 else slope[j] * z) + shift_out[j]


@njit(cache=True, fastmath=False)
def _relu(x, out):
    height, width, channels = x.shape
    for i in range(height):
        for j in range(width):
            for c in range(channels):
                v = x[i, j, c]
                out[i, j, c] = v if v > 0 else np.float32(0.0)


@njit(cache=True, fastmath=False)
def _pool_linear(x, weight, bias, out):
    """out = weight @ mean over (H, W) of x + bias, accumulated in float64 then rounded."""
    height, width, channels = x.shape
    pooled = np.zeros(channels, dtype=np.float64)
    for i in range(height):
        for j in range(width):
            for c in range(channels):
                pooled[c] += x[i, j, c]
    pooled /= height * width
    for k in range(weight.shape[0]):
        total = np.float64(bias[k])
        for c in range(channels):
            total += weight[k, c] * pooled[c]
        out[k] = total


@njit(cache=True, fastmath=False)
def _conv_affine(x, weight, stride, padding, gain, shift, out):
    """out[y, x, o] = gain[o] * sum over the window of x * weight + shift[o]; zero padding.
    x (H, W, Cin), weight (k, k, Cin, Cout): the innermost loop runs over contiguous outputs."""
    height, width, channels = x.shape
    kernel, outputs = weight.shape[0], weight.shape[3]
    acc = np.empty(outputs, dtype=np.float32)
    for oy in range(out.shape[0]):
        for ox in range(out.shape[1]):
            acc[:] = 0.0
            for ky in range(kernel):
                iy = oy * stride - padding + ky
                if iy < 0 or iy >= height:
                    continue
                for kx in range(kernel):
                    ix = ox * stride - padding + kx
                    if ix < 0 or ix >= width:
                        continue
                    for c in range(channels):
                        v = x[iy, ix, c]
                        for o in range(outputs):
                            acc[o] += v * weight[ky, kx, c, o]
            for o in range(outputs):
                out[oy, ox, o] = gain[o] * acc[o] + shift[o]


@njit(cache=True, fastmath=False)
def _conv_affine_rows(x, weight_rows, gain_row, shift_row, spread, padding, out):
    """`_conv_affine` at stride 1 for an input of few channels (a stem), one output row at a time as
    one flat run of out_w * Cout floats. Each input row is first spread out, every pixel's value
    repeated over Cout lanes, with `padding` zero pixels at both ends (`spread`, (H, Cin,
    (out_w + k - 1) * Cout), scratch); the window column kx of the whole output row is then the
    spread row from lane kx * Cout on, so each (ky, kx, c) is one multiply-add over the run with
    the kernel tiled along it (`weight_rows`, (k, k, Cin, out_w * Cout)). The run vectorises
    whole, so the cost follows out_w * Cout exactly, where a loop over Cout per pixel left a
    scalar tail (Cout = 18, 12). The same products as `_conv_affine`, summed in (ky, c, kx) order
    (its own order for one input channel; within float32 rounding of it for more); a column
    outside the input adds 0."""
    height, width, channels = x.shape
    kernel = weight_rows.shape[0]
    out_h, out_w, outputs = out.shape
    run = out_w * outputs
    for iy in range(height):
        for c in range(channels):
            for q in range(out_w + kernel - 1):
                ix = q - padding
                v = x[iy, ix, c] if 0 <= ix < width else np.float32(0.0)
                for o in range(outputs):
                    spread[iy, c, q * outputs + o] = v
    row = np.empty(run, dtype=np.float32)
    y = out.reshape(out_h, run)
    for oy in range(out_h):
        row[:] = 0.0
        for ky in range(kernel):
            iy = oy - padding + ky
            if iy < 0 or iy >= height:
                continue
            for c in range(channels):
                if kernel == 3:  # the usual stem: the three columns in one pass, in the same order
                    s0 = spread[iy, c, 0:run]
                    s1 = spread[iy, c, outputs:outputs + run]
                    s2 = spread[iy, c, 2 * outputs:2 * outputs + run]
                    w0 = weight_rows[ky, 0, c]
                    w1 = weight_rows[ky, 1, c]
                    w2 = weight_rows[ky, 2, c]
                    for i in range(run):
                        row[i] = ((row[i] + s0[i] * w0[i]) + s1[i] * w1[i]) + s2[i] * w2[i]
                    continue
                for kx in range(kernel):
                    source = spread[iy, c, kx * outputs:kx * outputs + run]
                    weights = weight_rows[ky, kx, c]
                    for i in range(run):
                        row[i] += source[i] * weights[i]
        for i in range(run):
            y[oy, i] = gain_row[i] * row[i] + shift_row[i]


@njit(cache=True)
def pooled_size(size, kernel, stride, ceil):
    """Output size of an unpadded pool (torch's formula; with ceil_mode a last, partial window)."""
    return -(-(size - kernel) // stride) + 1 if ceil else (size - kernel) // stride + 1


@njit(cache=True, fastmath=False)
def _avg_pool(x, kernel, stride, out):
    """Unpadded k x k average pool; a window that runs past the border averages what lies inside."""
    height, width, channels = x.shape
    acc = np.empty(channels, dtype=np.float32)
    for oy in range(out.shape[0]):
        y0, y1 = oy * stride, min(oy * stride + kernel, height)
        for ox in range(out.shape[1]):
            x0, x1 = ox * stride, min(ox * stride + kernel, width)
            acc[:] = 0.0
            for iy in range(y0, y1):
                for ix in range(x0, x1):
                    for c in range(channels):
                        acc[c] += x[iy, ix, c]
            count = np.float32((y1 - y0) * (x1 - x0))
            for c in range(channels):
                out[oy, ox, c] = acc[c] / count


@njit(cache=True, fastmath=False)
def _max_pool(x, kernel, stride, padding, out):
    """k x k max pool, each window clipped to the image where it overhangs the padding (torch pads
    with -inf, which never wins, so the maximum is the same); exact, as a maximum does not round."""
    height, width, channels = x.shape
    for oy in range(out.shape[0]):
        y0, y1 = max(oy * stride - padding, 0), min(oy * stride - padding + kernel, height)
        for ox in range(out.shape[1]):
            x0, x1 = max(ox * stride - padding, 0), min(ox * stride - padding + kernel, width)
            for c in range(channels):
                out[oy, ox, c] = x[y0, x0, c]
            for iy in range(y0, y1):
                for ix in range(x0, x1):
                    for c in range(channels):
                        if x[iy, ix, c] > out[oy, ox, c]:
                            out[oy, ox, c] = x[iy, ix, c]


__all__ = ["ROW_KERNEL_MAX_INPUTS", "_avg_pool", "_conv_affine", "_conv_affine_rows", "_max_pool", "_pool_linear", "_relu",
           "_rprelu", "pooled_size"]
