"""Which GEMM should the engine's 4/8-bit layers use on this CPU: torch._int_mm on the int8 planes,
or a float GEMM on the same integers (exact; evaluators/engine/quantized.py)?

torch._int_mm is fast where the CPU has int8 dot-product instructions (VNNI); without them it falls
back to code many times slower than an fp32 GEMM, and an 8-bit network then ran slower than its
float twin. The engine picks by the CPU (`isa.int8_gemm_kind`); this measures both, side by side
in alternating rounds (one thread, batch 1), so the pick can be checked on any machine:
- gemm: every distinct (M, K, N) the engine's int8-gemm layers run for the networks below, the
  int8 GEMM against the float one (float32 where exact, else float64, as the engine does);
- network: 8-bit networks a search meets (the 8-bit MobileNetV2 reference, and the pooled twin
  and the first grown twin a search queues for it), compiled with each kind, whole forward pass,
  and their logits compared bit for bit; the float MobileNetV2 on the engine beside them.
Records the CPU, the kernels' ISA path and the kind the engine picks here.

    python benchmarks/int8_gemm.py [--rounds 7] [--runs 200] [--json]

Writes results/bench/int8_gemm_vnni.csv or int8_gemm_no_vnni.csv (the host has VNNI or not).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

from bitnas.evaluators.engine import compile_model
from bitnas.evaluators.engine.isa import INT8_GEMM_ENV, cpu_flags, int8_gemm_kind, isa_path
from bitnas.evaluators.engine.packed_file import native_layers
from bitnas.evaluators.latency import cpu_model, time_runner
from bitnas.search.config import SearchConfig
from bitnas.search.neighbours import cheaper_neighbours, grown_twins
from bitnas.spaces import build_model
from bitnas.spaces.baselines import baseline_genotype

sys.path.insert(0, str(Path(__file__).parent))
from _output import write_csv  # noqa: E402

OUT = Path("results/bench")
GEOMETRY = {"input_size": 28, "in_channels": 1, "num_classes": 10}
REFERENCE = "mobilenetv2_int8_small"
KINDS = ("int8", "float")
WARMUP = 10


def networks() -> dict[str, object]:
    """The 8-bit reference, its pooled twin and its first grown twin (what a search queues first)."""
    config = SearchConfig()
    found = {REFERENCE: baseline_genotype(REFERENCE, **GEOMETRY)}
    for label, neighbours in (("pooled twin", cheaper_neighbours(config.space, REFERENCE, GEOMETRY, config.energy_profile, 1)),
                              ("grown twin", grown_twins(config.space, REFERENCE, GEOMETRY, config.energy_profile, 1))):
        for neighbour in neighbours:
            found[f"{label} ({neighbour.change})"] = config.space.decode(neighbour.params, **GEOMETRY)
    return found


def compiled(genotype, kind: str):
    """The engine model of `genotype` with every 4/8-bit layer on the `kind` GEMM."""
    previous = os.environ.get(INT8_GEMM_ENV)
    os.environ[INT8_GEMM_ENV] = kind
    try:
        torch.manual_seed(0)
        return compile_model(build_model(genotype).eval(), (genotype.in_channels, genotype.input_size, genotype.input_size))
    finally:
        if previous is None:
            del os.environ[INT8_GEMM_ENV]
        else:
            os.environ[INT8_GEMM_ENV] = previous


def gemm_shapes(engine, sample: np.ndarray) -> set[tuple[int, int, int, bool]]:
    """(M, K, N, float32 exact) of each int8-gemm layer, read from the buffers one run allocates."""
    engine.run_one(sample)
    shapes = set()
    for conv in native_layers(engine.steps):
        if conv.path == "int8-gemm":
            for (name, shape, _) in conv._buffers:
                if name == "pairs":
                    planes, rows, columns = shape
                    shapes.add((planes * rows, conv.k_cols, columns, conv.gemm_matrix().dtype != torch.float64))
    return shapes


def side_by_side(runners: list, rounds: int, runs: int) -> list[float]:
    """Median milliseconds of each runner over `rounds` alternating rounds (order reversed every
    other round), each round the median of `runs` calls on one pinned thread."""
    per_round = [[] for _ in runners]
    for number in range(rounds):
        order = list(range(len(runners)))[::-1 if number % 2 else 1]
        for index in order:
            timings, _ = time_runner(runners[index], threads=1, runs=runs, warmup=WARMUP)
            per_round[index].append(statistics.median(timings))
    return [statistics.median(values) for values in per_round]


def gemm_rows(shapes, rounds: int, runs: int, label: dict) -> list[dict]:
    rows = []
    generator = torch.Generator().manual_seed(0)
    for m, k, n, exact in sorted(shapes):
        left = torch.randint(-127, 128, (m, k), dtype=torch.int8, generator=generator)
        right = torch.randint(-127, 128, (k, n), dtype=torch.int8, generator=generator)
        kind = torch.float32 if exact else torch.float64
        left_float, right_float = left.to(kind), right.to(kind)
        out_int, out_float = torch.empty(m, n, dtype=torch.int32), torch.empty(m, n, dtype=kind)
        int_ms, float_ms = side_by_side([lambda: torch._int_mm(left, right, out=out_int),
                                         lambda: torch.mm(left_float, right_float, out=out_float)], rounds, runs)
        same = torch.equal(out_int, out_float.to(torch.int32))
        rows.append({"section": "gemm", "case": f"{m}x{k}x{n}", "float_type": str(kind).removeprefix("torch."),
                     "int8_ms": round(int_ms, 4), "float_ms": round(float_ms, 4),
                     "int8_over_float": round(int_ms / float_ms, 2), "same_integers": same, **label})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds (default 7)")
    parser.add_argument("--runs", type=int, default=200, help="calls per round and network (default 200)")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args()
    if args.rounds < 1 or args.runs < 10:
        sys.exit("--rounds: at least 1; --runs: at least 10")
    if os.environ.get(INT8_GEMM_ENV):
        sys.exit(f"unset {INT8_GEMM_ENV}: this benchmark sets it for each compile and reports what the CPU picks")
    has_vnni = bool({"avx512_vnni", "avx_vnni"} & cpu_flags())
    label = {"cpu": cpu_model(), "isa_path": isa_path(), "vnni": has_vnni, "engine_picks": int8_gemm_kind()}
    print(f"{label['cpu']}; kernels {label['isa_path']}; VNNI {'yes' if has_vnni else 'no'}; the engine picks the "
          f"{label['engine_picks']} GEMM here; one thread, batch 1, {args.rounds} alternating rounds of {args.runs} runs",
          flush=True)
    rows, shapes = [], set()
    for name, genotype in networks().items():
        engines = {kind: compiled(genotype, kind) for kind in KINDS}
        sample = np.random.default_rng(0).standard_normal(engines["int8"].input_shape).astype(np.float32)
        logits = {kind: engine.run_one(sample) for kind, engine in engines.items()}
        shapes |= gemm_shapes(engines["float"], sample)
        int_ms, float_ms = side_by_side([lambda e=engines["int8"]: e.run_one(sample),
                                         lambda e=engines["float"]: e.run_one(sample)], args.rounds, args.runs)
        row = {"section": "network", "case": name, "float_type": "", "int8_ms": round(int_ms, 4),
               "float_ms": round(float_ms, 4), "int8_over_float": round(int_ms / float_ms, 2),
               "same_integers": bool(np.array_equal(logits["int8"], logits["float"])), **label}
        rows.append(row)
        print(f"  {name:<52} int8 GEMM {int_ms:7.3f} ms  float GEMM {float_ms:7.3f} ms  "
              f"({row['int8_over_float']:.2f}x)  logits identical: {row['same_integers']}", flush=True)
    float_twin = compiled(baseline_genotype("mobilenetv2_small", **GEOMETRY), "float")
    sample = np.random.default_rng(0).standard_normal(float_twin.input_shape).astype(np.float32)
    (twin_ms,) = side_by_side([lambda: float_twin.run_one(sample)], args.rounds, args.runs)
    rows.append({"section": "network", "case": "mobilenetv2_small (float, no int8 layer)", "float_type": "",
                 "int8_ms": "", "float_ms": round(twin_ms, 4), "int8_over_float": "", "same_integers": "", **label})
    print(f"  {'mobilenetv2_small (float twin)':<52} {twin_ms:.3f} ms")
    gemms = gemm_rows(shapes, args.rounds, args.runs, label)
    for row in gemms:
        print(f"  GEMM {row['case']:<16} int8 {row['int8_ms']:.4f} ms  {row['float_type']} {row['float_ms']:.4f} ms  "
              f"({row['int8_over_float']:.1f}x)  same integers: {row['same_integers']}")
    rows += gemms
    path = OUT / f"int8_gemm_{'vnni' if has_vnni else 'no_vnni'}.csv"
    write_csv(path, rows)
    print(f"wrote {path}")
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
