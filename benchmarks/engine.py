"""How much faster is the packed binary engine than torch fp32, per layer and end to end, and is it exact?

Everything runs in one process, interleaved call by call (other work shares these cores, so only
ratios measured side by side mean anything), at batch 1:

- layer: binary 3x3 conv at the ResNet-18 shapes, one thread, engine (activation thresholding and
  packing included) vs torch fp32 conv2d of the same shape; goal median speedup >= 15x on AVX-512
  VPOPCNTDQ, >= 8x on AVX2;
- threads: the engine's layer time on two threads vs one; goal >= 1.8x on the larger shapes;
- network: a Bi-Real-style ResNet-18 (16 binary 3x3 convs, full-precision stem, 1x1 downsampling
  shortcuts and classifier) at 32x32 and 224x224, engine vs the same network with its binary convs
  as plain fp32 convs in torch, one thread; goal >= 8x; the binary-simulated torch model for scale;
- exactness: integer accumulations vs torch's +-1 conv (mismatches), logits' max relative error
  and predicted-class agreement on random images.

Every row records the instruction-set path numba compiled the kernels for (`isa`). With
`--isa-subprocess` (default with --quick on an AVX-512 host) the layer and threads sections are
rerun in a subprocess with NUMBA_CPU_NAME=haswell (AVX2 kernels) and torch limited to AVX2
(ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2), so one run reports both paths side by side.

    python benchmarks/engine.py [--quick] [--json] [--csv PATH] [--isa-subprocess | --no-isa-subprocess]
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import platform
import subprocess
import statistics
import sys
import time
from pathlib import Path

import numba
import numpy as np
import torch
from torch import nn

from bitnas.evaluators.engine import (binary_conv2d_prepared, compile_model, pack_activations, pack_weight_signs,
                                      packed_words, prepare_weights)
from bitnas.evaluators.engine.isa import describe as isa_describe
from bitnas.evaluators.engine.isa import isa_path
from bitnas.spaces import Genotype, build_model
from bitnas.spaces.blocks import BinaryConvBlock
from bitnas.spaces.builder import Network
from bitnas.spaces.layers import QuantConv2d
from bitnas.spaces.quantizers import FullPrecision, LsqActivations, UniformWeights

from _native_networks import network_rows as searched_network_rows  # noqa: E402

LAYER_SHAPES = [(56, 64), (28, 128), (14, 256), (7, 512)]  # ResNet-18's 3x3 convs: (size, channels)
# Channels < 64 (most of a word unused), typical of the default search on 28x28 MNIST: reported, not in the median.
SMALL_SHAPES = [(32, 16), (16, 32)]
NO_RESIDUAL = np.zeros((0, 0, 0), np.float32)


def cpu_description() -> dict:
    from bitnas.evaluators.latency import cpu_model

    flags: list[str] = []
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next(line for line in handle if line.startswith("flags")).split(":", 1)[1].split()
    except (OSError, StopIteration):
        pass
    wanted = ("avx2", "avx512f", "avx512_vpopcntdq", "avx512vpopcntdq", "popcnt", "neon", "asimd")
    return {"cpu": cpu_model(), "simd": [flag for flag in wanted if flag in flags], "machine": platform.machine(),
            "numba": numba.__version__, "torch": torch.__version__, "numpy": np.__version__, **isa_describe(),
            "torch_isa": os.environ.get("ATEN_CPU_CAPABILITY", "default")}


def interleaved(candidates: dict, rounds: int, calls: int) -> dict[str, float]:
    """Median milliseconds per call of each candidate, alternating candidates round by round."""
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for name, run in candidates.items():  # warm-up: compile, allocate, fill caches
        run()
    for _ in range(rounds):
        for name, run in candidates.items():
            for _ in range(calls):
                start = time.perf_counter_ns()
                run()
                samples[name].append((time.perf_counter_ns() - start) / 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def set_threads(count: int) -> None:
    numba.set_num_threads(min(count, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(count)


def layer_case(size: int, channels: int, seed: int):
    """A binary 3x3 conv at one shape: the engine call and torch's fp32 conv, on the same data."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((size, size, channels)).astype(np.float32)  # channel-last, as in the engine
    shift = rng.normal(0, 0.1, channels).astype(np.float32)
    weight = rng.standard_normal((channels, channels, 3, 3)).astype(np.float32)
    packed_weights = prepare_weights(pack_weight_signs(weight >= 0))  # once, as the compiled step does
    packed = np.empty((size, size, packed_words(channels)), np.uint64)
    out = np.empty((size, size, channels), np.float32)
    scale, bias = np.abs(weight).mean(axis=(1, 2, 3)).astype(np.float64), np.zeros(channels)

    def engine() -> np.ndarray:
        pack_activations(x, shift, packed)
        binary_conv2d_prepared(packed, packed_weights, 3, 1, 1, channels, scale, bias, NO_RESIDUAL, False, out)
        return out

    x_torch = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
    w_torch = torch.from_numpy(weight)

    def fp32() -> torch.Tensor:
        with torch.inference_mode():
            return torch.nn.functional.conv2d(x_torch, w_torch, padding=1)

    def mismatches() -> int:
        """Engine integer accumulation vs torch's conv of the +-1 tensors: entries that differ."""
        pack_activations(x, shift, packed)
        unit = np.empty_like(out)
        binary_conv2d_prepared(packed, packed_weights, 3, 1, 1, channels, np.ones(channels), bias, NO_RESIDUAL, False,
                               unit)
        signs = torch.where(x_torch + torch.from_numpy(shift)[:, None, None] >= 0, 1.0, -1.0)
        expected = torch.nn.functional.conv2d(signs, torch.where(w_torch >= 0, 1.0, -1.0), padding=1)[0]
        return int((torch.from_numpy(unit.transpose(2, 0, 1).copy()) != expected).sum())

    return engine, fp32, mismatches


def _stem_conv(in_channels: int, out_channels: int, kernel: int, stride: int, bits: int) -> nn.Module:
    if bits == 32:
        return nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False)
    return QuantConv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False,
                       input_quantizer=LsqActivations(bits), kernel_quantizer=UniformWeights(bits))


def bireal18(size: int, classes: int, stem_bits: int = 32) -> nn.Module:
    """Bi-Real-18: ResNet-18's 16 3x3 convs binary, each with its own shortcut (bitnas blocks);
    the stem conv in fp32 or 8 bit."""
    if size >= 128:  # ImageNet stem: 7x7/2 conv, BN, ReLU, 3x3/2 max-pool
        stem = nn.Sequential(_stem_conv(3, 64, 7, 2, stem_bits), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        blocks, channels = [], 64
        for index, width in enumerate((64, 128, 256, 512)):
            for depth in range(4):
                stride = 2 if index > 0 and depth == 0 else 1
                blocks.append(BinaryConvBlock(channels, width, stride, 3))
                channels = width
        return Network(stem, nn.Sequential(*blocks), channels, classes)
    stages = [{"block": "binary", "width": w, "depth": 4, "stride": 1 if i == 0 else 2}
              for i, w in enumerate((64, 128, 256, 512))]
    return build_model(Genotype(input_size=size, in_channels=3, num_classes=classes, stem_width=64, stages=stages,
                                stem_bits=stem_bits))


def trained_like(model: nn.Module, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(0.3 * torch.randn(module.num_features, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(module.num_features, generator=generator))
            if hasattr(module, "shift"):
                module.shift.copy_(0.2 * torch.randn(module.shift.shape, generator=generator))
    return model.eval()


def as_fp32(model: nn.Module) -> nn.Module:
    """The same network with its binary (and 8-bit) convs as ordinary fp32 convs: what quantization replaces."""
    floated = copy.deepcopy(model)
    for module in floated.modules():
        if hasattr(module, "input_quantizer"):
            module.input_quantizer, module.kernel_quantizer = FullPrecision(), FullPrecision()
    return floated.eval()


def network_rows(quick: bool) -> list[dict]:
    rows = []
    for size, classes, images, stem_bits in ((32, 10, 32, 32), (32, 10, 32, 8), (224, 1000, 4, 32), (224, 1000, 4, 8)):
        torch.manual_seed(size)
        model = trained_like(bireal18(size, classes, stem_bits), size)
        engine = compile_model(model, (3, size, size))
        fp32 = as_fp32(model)
        batch = torch.randn(images if not quick else max(2, images // 4), 3, size, size)
        with torch.inference_mode():
            expected = model(batch).numpy()
            exact = copy.deepcopy(model).double()(batch.double()).numpy()  # the same function in float64
        got = engine(batch.numpy())
        relative = lambda a, b: float(np.abs(a - b).max() / np.abs(b).max())  # noqa: E731
        agree = float((got.argmax(1) == expected.argmax(1)).mean())
        sample = batch[:1]
        sample_np = sample[0].numpy()

        def run_torch(m=fp32):
            with torch.inference_mode():
                return m(sample)

        def run_simulated(m=model):
            with torch.inference_mode():
                return m(sample)

        calls = (5 if size == 32 else 1) if quick else (20 if size == 32 else 3)
        rounds = 3 if quick else 5
        times = interleaved({"engine": lambda: engine.run_one(sample_np), "fp32": run_torch,
                             "simulated": run_simulated}, rounds, calls)
        case = f"bireal18-{size}x{size}" + ("-stem8" if stem_bits == 8 else "")
        rows.append({"section": "network", "isa": isa_path(), "case": case, "threads": 1,
                     "engine_ms": times["engine"], "baseline_ms": times["fp32"], "ratio": times["fp32"] / times["engine"],
                     "goal": ">= 8x vs fp32", "exact": f"rel logit err vs torch {relative(got, expected):.1e} "
                     f"(vs fp64: engine {relative(got, exact):.1e}, torch fp32 {relative(expected, exact):.1e}); "
                     f"same class {agree:.0%} of {len(batch)} images; torch binary-simulated {times['simulated']:.1f} ms"})
    return rows


def layer_rows(quick: bool) -> list[dict]:
    rows, thread_rows = [], []
    calls, rounds = (5, 3) if quick else (20, 5)
    for index, (size, channels) in enumerate(LAYER_SHAPES):
        engine, fp32, mismatches = layer_case(size, channels, index)
        set_threads(1)
        one = interleaved({"engine": engine, "fp32": fp32}, rounds, calls)
        rows.append({"section": "layer", "isa": isa_path(), "case": f"3x3 {size}x{size}x{channels}", "threads": 1,
                     "engine_ms": one["engine"], "baseline_ms": one["fp32"], "ratio": one["fp32"] / one["engine"],
                     "goal": ">= 15x (median)" if isa_path() == "avx512-vpopcntdq" else ">= 8x (median, AVX2)",
                     "exact": f"{mismatches()} integer mismatches"})
        # Two threads vs one, alternating thread counts between rounds (after starting the pool).
        set_threads(2)
        engine()
        samples = {1: [], 2: []}
        for _ in range(rounds):
            for threads in (1, 2):
                set_threads(threads)
                samples[threads].append(interleaved({"engine": engine}, 1, calls)["engine"])
        one_t, two_t = statistics.median(samples[1]), statistics.median(samples[2])
        thread_rows.append({"section": "threads", "isa": isa_path(), "case": f"3x3 {size}x{size}x{channels}", "threads": 2,
                            "engine_ms": two_t, "baseline_ms": one_t, "ratio": one_t / two_t,
                            "goal": ">= 1.8x (larger shapes)", "exact": ""})
    for index, (size, channels) in enumerate(SMALL_SHAPES):
        engine, fp32, mismatches = layer_case(size, channels, 100 + index)
        set_threads(1)
        one = interleaved({"engine": engine, "fp32": fp32}, rounds, calls)
        rows.append({"section": "small-c", "isa": isa_path(), "case": f"3x3 {size}x{size}x{channels}", "threads": 1,
                     "engine_ms": one["engine"], "baseline_ms": one["fp32"], "ratio": one["fp32"] / one["engine"],
                     "goal": "report (C < 64)", "exact": f"{mismatches()} integer mismatches"})
    set_threads(1)
    return rows + thread_rows


AVX2_ENVIRONMENT = {"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "", "ATEN_CPU_CAPABILITY": "avx2",
                    "ONEDNN_MAX_CPU_ISA": "AVX2"}


def avx2_layer_rows(quick: bool) -> list[dict]:
    """The layer and threads sections rerun in a subprocess compiled for AVX2 (haswell), torch
    limited to AVX2 too, so the AVX2 path is measured on this machine next to the host's."""
    command = [sys.executable, __file__, "--layers-only", "--json", "--csv", os.devnull, "--no-isa-subprocess"]
    if quick:
        command.append("--quick")
    result = subprocess.run(command, env={**os.environ, **AVX2_ENVIRONMENT}, capture_output=True, text=True,
                            timeout=600, check=False)
    if result.returncode != 0:
        print(f"AVX2 subprocess failed ({result.returncode}): {result.stderr.strip().splitlines()[-1:]}",
              file=sys.stderr)
        return []
    return json.loads(result.stdout.strip().splitlines()[-1])["rows"]  # the JSON is the last line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (under 2 minutes)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--csv", type=Path, default=Path("results/bench/engine.csv"))
    parser.add_argument("--layers-only", action="store_true", help="only the layer and threads sections")
    parser.add_argument("--isa-subprocess", action=argparse.BooleanOptionalAction, default=None,
                        help="also measure the AVX2 path in a subprocess (default: with --quick, on a host "
                             "whose own path is not AVX2)")
    args = parser.parse_args()
    started = time.perf_counter()
    environment = cpu_description()
    set_threads(1)
    rows = layer_rows(args.quick)
    other_isa = args.isa_subprocess if args.isa_subprocess is not None else (args.quick and isa_path() != "avx2")
    if other_isa:
        rows += avx2_layer_rows(args.quick)
    if not args.layers_only:
        rows += network_rows(args.quick)
        rows += [{**row, "isa": isa_path(), "exact": f"{row['native_share']:.0%} of {row['quantized_layers']} "
                  f"quantized layers native"}
                 for row in searched_network_rows(20, interleaved, rounds=3 if args.quick else 5,
                                                  calls=5 if args.quick else 20)]
    by_isa: dict[str, list[float]] = {}
    for row in rows:
        if row["section"] == "layer":
            by_isa.setdefault(row["isa"], []).append(row["ratio"])
    summary = {"isa_path": isa_path(),
               "layer_median_speedup": statistics.median(by_isa[isa_path()]),
               "layer_median_speedup_by_isa": {isa: statistics.median(values) for isa, values in by_isa.items()},
               "network_speedups": {row["case"]: row["ratio"] for row in rows if row["section"] == "network"},
               "searched_networks": {
                   "count": sum(row["section"] == "networks" for row in rows),
                   "native_share_min": min([row["native_share"] for row in rows if row["section"] == "networks"],
                                           default=None),
                   "median_speedup_vs_torch": statistics.median(
                       [row["ratio"] for row in rows if row["section"] == "networks"] or [float("nan")])},
               "seconds": time.perf_counter() - started}
    if str(args.csv) != os.devnull:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
    with args.csv.open("w", newline="") as handle:
        fields = list(dict.fromkeys(key for row in rows for key in row))  # sections add columns of their own
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows({**row, "engine_ms": round(row["engine_ms"], 4), "baseline_ms": round(row["baseline_ms"], 4),
                          "ratio": round(row["ratio"], 2)} for row in rows)
    print(f"{environment['cpu']}; SIMD {', '.join(environment['simd']) or '-'}; numba {environment['numba']}, "
          f"torch {environment['torch']}; kernels {environment['isa_path']}")
    header = (f"{'section':<8} {'isa':<16} {'case':<22} {'thr':>3} {'engine ms':>10} {'base ms':>10} {'ratio':>7}  "
              f"{'goal':<24} exactness")
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['section']:<8} {row['isa']:<16} {row['case']:<22} {row['threads']:>3} {row['engine_ms']:>10.3f} "
              f"{row['baseline_ms']:>10.3f} {row['ratio']:>6.1f}x  {row['goal']:<24} {row['exact']}")
    print("layer median speedup " + ", ".join(f"{isa} {value:.1f}x" for isa, value in
                                              summary["layer_median_speedup_by_isa"].items())
          + " (goal 15x AVX-512 VPOPCNTDQ, 8x AVX2); "
          + "; ".join(f"{case} {ratio:.1f}x" for case, ratio in summary["network_speedups"].items())
          + f" (goal 8x); {summary['seconds']:.0f} s; written to {args.csv}")
    searched = summary["searched_networks"]
    if searched["count"]:
        print(f"networks the search measures ({searched['count']}: the small references and sampled default "
              f"genotypes): smallest native share of quantized layers {searched['native_share_min']:.0%} (goal 100%), "
              f"median speedup vs the torch model {searched['median_speedup_vs_torch']:.1f}x")
    if args.json:
        print(json.dumps({"environment": environment, "rows": rows, "summary": summary}))


if __name__ == "__main__":
    main()
