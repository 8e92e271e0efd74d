"""How much faster are the native quantized convs/linears than torch, and are they exact?

One process, one thread, batch 1, every candidate interleaved call by call (other work shares
these cores, so only ratios measured side by side mean anything). For each layer:

- native: `NativeQuantConv` / `NativeQuantLinear` on a channel-last float32 input, quantizing
  the input included;
- fp32: torch's fp32 conv2d / linear of the same shape (what the quantized layer replaces);
- simulated: the torch `QuantConv2d` / `QuantLinear` itself (quantize to float levels, fp32 conv).

Cases: 3x3 stride-1 convs at ResNet-18's shapes (56x56x64 ... 7x7x512) for W2A2, W4A4, W8A8
(goals: W2A2 >= 5x, W4A4 >= 2.5x, W8A8 >= 2x vs fp32); the 8-bit stem (3x3, Cin 1 at 28x28 and
Cin 3 at 32x32, 16 channels; goal >= 2x); depthwise 3x3 at 28x28x64 (W8A8, W4A4, W2A2); the
8-bit classifier (512 -> 10, 64 -> 10). Exactness: integer mismatches of every plane pair vs
torch's conv of the integer planes of its quantized operands, and the output's max error vs
torch relative to the output's largest magnitude.

    python benchmarks/quantized.py [--quick] [--json] [--csv PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numba
import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _output import write_csv  # noqa: E402
from engine import cpu_description, set_threads  # noqa: E402

from bitnas.evaluators.engine.quantized import NativeQuantConv, NativeQuantLinear  # noqa: E402
from bitnas.spaces import quantizers as q  # noqa: E402
from bitnas.spaces.layers import QuantConv2d, QuantLinear  # noqa: E402

LAYER_SHAPES = [(56, 64), (28, 128), (14, 256), (7, 512)]
MIXES = {  # (activation quantizer, weight quantizer)
    "W2A2": (q.TwoBitSymmetric, q.TwoBitWeights),
    "W4A4": (lambda: q.LsqActivations(4), lambda: q.UniformWeights(4)),
    "W8A8": (lambda: q.LsqActivations(8), lambda: q.UniformWeights(8)),
}
GOALS = {"W2A2": 5.0, "W4A4": 2.5, "W8A8": 2.0}


def interleaved(candidates: dict, rounds: int, calls: int) -> dict[str, tuple[float, float]]:
    """(median, minimum) milliseconds per call of each candidate, alternating candidates round by
    round (benchmarks/engine.py's scheme). The minimum is reported too: on a shared machine the
    fp32 baseline's median swings 2-3x between runs while its minimum stays put."""
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for run in candidates.values():  # warm-up: compile, allocate, fill caches
        run()
    for _ in range(rounds):
        for name, run in candidates.items():
            for _ in range(calls):
                start = time.perf_counter_ns()
                run()
                samples[name].append((time.perf_counter_ns() - start) / 1e6)
    return {name: (statistics.median(values), min(values)) for name, values in samples.items()}


def quantized_conv(cin: int, cout: int, kernel: int, groups: int, mix: str, seed: int) -> QuantConv2d:
    torch.manual_seed(seed)
    act, weight = MIXES[mix]
    conv = QuantConv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False,
                       input_quantizer=act(), kernel_quantizer=weight())
    with torch.no_grad():
        if isinstance(conv.input_quantizer, q.LsqActivations):
            conv.input_quantizer.step.fill_(3.0 / conv.input_quantizer.qp)  # unit-variance inputs over ~[-3, 3]
    return conv.eval()


def integer_planes(quantizer: nn.Module, values: torch.Tensor, weights: bool) -> list[torch.Tensor]:
    """The integer planes of torch's quantized operand, derived from its values alone."""
    values = values.double()
    sign = torch.where(values >= 0, 1.0, -1.0).double()
    if quantizer.bits == 1:
        return [sign]
    if isinstance(quantizer, q.TwoBitSymmetric):  # TwoBitWeights too
        peak = values.abs().amax(dim=(1, 2, 3), keepdim=True) if weights else 1.0
        return [sign, torch.where(values.abs() == peak, sign, -sign)]
    if weights:
        return [torch.round(values / (values.abs().amax(dim=(1, 2, 3), keepdim=True) / quantizer.qp))]
    return [torch.round(values / quantizer.step.detach().abs().clamp_min(1e-6).double())]


def exactness(conv: QuantConv2d, native: NativeQuantConv, x: torch.Tensor, x_hwc: np.ndarray) -> str:
    with torch.no_grad():
        terms = native.integer_terms(x_hwc)
        mismatches = 0
        xs = integer_planes(conv.input_quantizer, conv.input_quantizer(x), weights=False)
        ws = integer_planes(conv.kernel_quantizer, conv.kernel_quantizer(conv.weight), weights=True)
        for i, plane_x in enumerate(xs):
            for j, plane_w in enumerate(ws):
                expected = nn.functional.conv2d(plane_x, plane_w, padding=conv.padding, groups=conv.groups)
                mismatches += int((torch.from_numpy(terms[i, j]).permute(2, 0, 1)[None] != expected.long()).sum())
        expected = conv(x)[0].permute(1, 2, 0).numpy()
    error = float(np.abs(native(x_hwc) - expected).max() / np.abs(expected).max())
    return f"{mismatches} integer mismatches; rel err vs torch {error:.1e}"


def conv_row(section: str, case: str, mix: str, conv: QuantConv2d, size: int, goal: float | None,
             rounds: int, calls: int) -> dict:
    native = NativeQuantConv.from_module(conv)
    x = torch.randn(1, conv.in_channels, size, size, generator=torch.Generator().manual_seed(size))
    x_hwc = np.ascontiguousarray(x[0].permute(1, 2, 0).numpy())
    weight = conv.weight.detach().clone()
    options = dict(padding=conv.padding, groups=conv.groups)

    def fp32():
        with torch.inference_mode():
            return nn.functional.conv2d(x, weight, **options)

    def simulated():
        with torch.inference_mode():
            return conv(x)

    times = interleaved({"native": lambda: native(x_hwc), "fp32": fp32, "simulated": simulated}, rounds, calls)
    return row(section, case, mix, native.path, times, goal, exactness(conv, native, x, x_hwc))


def row(section, case, mix, path, stats, goal, exact) -> dict:
    times = {name: median for name, (median, _) in stats.items()}
    ratio = times["fp32"] / times["native"]
    return {"section": section, "case": case, "mix": mix, "path": path, "native_ms": times["native"],
            "fp32_ms": times["fp32"], "simulated_ms": times["simulated"], "vs_fp32": ratio,
            "vs_fp32_min": stats["fp32"][1] / stats["native"][1],
            "vs_simulated": times["simulated"] / times["native"],
            "goal": f">= {goal}x vs fp32" if goal else "", "met": "" if goal is None else ("yes" if ratio >= goal else "no"),
            "exact": exact}


def classifier_row(features: int, classes: int, rounds: int, calls: int) -> dict:
    torch.manual_seed(features)
    linear = QuantLinear(features, classes, input_quantizer=q.LsqActivations(8), kernel_quantizer=q.UniformWeights(8))
    linear.eval()
    native = NativeQuantLinear.from_module(linear)
    x = torch.randn(1, features)
    x_np = x[0].numpy().copy()
    weight, bias = linear.weight.detach().clone(), linear.bias.detach().clone()

    def fp32():
        with torch.inference_mode():
            return nn.functional.linear(x, weight, bias)

    def simulated():
        with torch.inference_mode():
            return linear(x)

    times = interleaved({"native": lambda: native(x_np), "fp32": fp32, "simulated": simulated}, rounds, calls)
    with torch.no_grad():
        expected = linear(x)[0].numpy()
    error = float(np.abs(native(x_np) - expected).max() / np.abs(expected).max())
    return row("classifier", f"linear {features}->{classes}", "W8A8", native.path, times, None,
               f"rel err vs torch {error:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (about a minute)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--csv", type=Path, default=Path("results/bench/quantized.csv"))
    args = parser.parse_args()
    started = time.perf_counter()
    set_threads(1)
    rounds, calls = (3, 5) if args.quick else (7, 15)
    small_calls = calls * 10  # the stem, depthwise and classifier calls take microseconds
    rows = []
    # Warm the machine up first: the first case measured used to see a torch conv up to 2x slower
    # than the same conv a few seconds later (clocks, oneDNN's first-use setup).
    warm = quantized_conv(64, 64, 3, 1, "W8A8", seed=0)
    warm_x = torch.randn(1, 64, 56, 56)
    deadline = time.perf_counter() + (0.5 if args.quick else 2.0)
    while time.perf_counter() < deadline:
        with torch.inference_mode():
            nn.functional.conv2d(warm_x, warm.weight, padding=1)
    for mix in MIXES:
        for index, (size, channels) in enumerate(LAYER_SHAPES):
            conv = quantized_conv(channels, channels, 3, 1, mix, seed=index)
            rows.append(conv_row("layer", f"3x3 {size}x{size}x{channels}", mix, conv, size, GOALS[mix], rounds, calls))
    for cin, size in ((1, 28), (3, 32)):
        conv = quantized_conv(cin, 16, 3, 1, "W8A8", seed=cin)
        rows.append(conv_row("stem", f"3x3 {size}x{size}x{cin}->16", "W8A8", conv, size, 2.0, rounds, small_calls))
    for mix in ("W8A8", "W4A4", "W2A2"):
        conv = quantized_conv(64, 64, 3, 64, mix, seed=7)
        rows.append(conv_row("depthwise", "3x3 28x28x64", mix, conv, 28, None, rounds, small_calls))
    for features in (512, 64):
        rows.append(classifier_row(features, 10, rounds, small_calls))

    summary = {"seconds": time.perf_counter() - started,
               "layer_median_vs_fp32": {mix: statistics.median(r["vs_fp32"] for r in rows
                                                               if r["section"] == "layer" and r["mix"] == mix)
                                        for mix in MIXES},
               "layer_median_vs_fp32_min": {mix: statistics.median(r["vs_fp32_min"] for r in rows
                                                                   if r["section"] == "layer" and r["mix"] == mix)
                                            for mix in MIXES}}
    write_csv(args.csv, [{**r, **{k: round(r[k], 4) for k in ("native_ms", "fp32_ms", "simulated_ms")},
                          "vs_fp32": round(r["vs_fp32"], 2), "vs_fp32_min": round(r["vs_fp32_min"], 2), "vs_simulated": round(r["vs_simulated"], 2)} for r in rows])
    environment = {**cpu_description(), "threads": 1, "numba_threads": numba.get_num_threads()}
    if args.json:
        json.dump({"environment": environment, "rows": rows, "summary": summary}, sys.stdout, indent=1)
        print()
        return
    print(f"{environment['cpu']}; SIMD {', '.join(environment['simd']) or '-'}; numba {environment['numba']}, "
          f"torch {environment['torch']}; one thread, batch 1, median ms of interleaved calls "
          "(ratio '(min)': of the fastest calls)")
    header = (f"{'section':<10} {'case':<22} {'mix':<5} {'path':<9} {'native':>8} {'fp32':>8} {'sim':>8} "
              f"{'vs fp32':>8} {'(min)':>7} {'vs sim':>7}  {'goal':<15} {'met':<4} exactness")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['section']:<10} {r['case']:<22} {r['mix']:<5} {r['path']:<9} {r['native_ms']:>8.3f} "
              f"{r['fp32_ms']:>8.3f} {r['simulated_ms']:>8.3f} {r['vs_fp32']:>7.2f}x {r['vs_fp32_min']:>6.2f}x {r['vs_simulated']:>6.1f}x  "
              f"{r['goal']:<15} {r['met']:<4} {r['exact']}")
    print("layer median vs fp32 (medians; minima): " + ", ".join(
        f"{mix} {v:.2f}x; {summary['layer_median_vs_fp32_min'][mix]:.2f}x (goal {GOALS[mix]}x)"
        for mix, v in summary["layer_median_vs_fp32"].items())
          + f"; {summary['seconds']:.0f} s; written to {args.csv}")


if __name__ == "__main__":
    main()
