"""Which instruction set numba compiles the engine's kernels for, as one short name.

numba compiles for the host CPU unless NUMBA_CPU_NAME / NUMBA_CPU_FEATURES say otherwise
(`NUMBA_CPU_NAME=haswell` gives AVX2 code on an AVX-512 machine, which is how the benchmark
measures both paths on one machine). The path decides the kernels' register blocking and is
recorded with every benchmark row, since a speedup means little without it.

It also decides how the int8 GEMM multiplies (`int8_gemm_kind`): torch._int_mm is fast only with
int8 dot-product instructions (VNNI); without them it ran 12-30x slower than an fp32 GEMM of the
same shape on a Zen 3 EPYC (benchmarks/int8_gemm.py), so there the integer planes go through a
float GEMM instead, which is exact on them (evaluators/engine/quantized.py).
"""

from __future__ import annotations

import functools
import os

from bitnas.errors import UserError

# Forces the int8 GEMM's kind ("int8": torch._int_mm; "float": a float GEMM on the same integers);
# unset, the CPU decides (int8_gemm_kind). Read when a layer is compiled.
INT8_GEMM_ENV = "BITNAS_INT8_GEMM"
INT8_GEMM_KINDS = ("int8", "float")

# CPU names LLVM knows that have AVX-512 VPOPCNTDQ (Ice Lake and later Intel, Zen 4 and later AMD).
_VPOPCNT_CPUS = ("icelake", "tigerlake", "rocketlake", "sapphirerapids", "emeraldrapids", "graniterapids",
                 "alderlake-avx512", "znver4", "znver5", "diamondrapids")
_AVX2_CPUS = ("haswell", "broadwell", "skylake", "alderlake", "raptorlake", "meteorlake", "arrowlake", "lunarlake",
              "gracemont", "znver1", "znver2", "znver3", "cascadelake", "skylake-avx512", "cooperlake",
              "cannonlake", "x86-64-v3", "x86-64-v4")


def cpu_flags() -> set[str]:
    """The host's /proc/cpuinfo flags (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _from_features(features: str) -> str | None:
    """The path an explicit LLVM feature string (NUMBA_CPU_FEATURES, e.g. '+avx2,-avx512f') gives."""
    enabled = {item[1:] for item in features.split(",") if item.startswith("+")}
    disabled = {item[1:] for item in features.split(",") if item.startswith("-")}
    if not enabled and not disabled:
        return None
    if "avx512vpopcntdq" in enabled and "avx512vpopcntdq" not in disabled:
        return "avx512-vpopcntdq"
    if "avx2" in enabled and "avx2" not in disabled:
        return "avx2"
    return "generic"


def _host_path(flags: set[str]) -> str:
    if "avx512_vpopcntdq" in flags or "avx512vpopcntdq" in flags:
        return "avx512-vpopcntdq"
    return "avx2" if "avx2" in flags else "generic"


@functools.lru_cache(maxsize=None)
def isa_path() -> str:
    """'avx512-vpopcntdq' | 'avx2' | 'generic': what numba's code generation targets now."""
    from numba.core import config

    name = (config.CPU_NAME or os.environ.get("NUMBA_CPU_NAME") or "host").lower()
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else os.environ.get("NUMBA_CPU_FEATURES", "")
    explicit = _from_features(features or "")
    if explicit is not None:
        return explicit
    if name in ("host", "native"):
        return _host_path(cpu_flags())
    if name in _VPOPCNT_CPUS:
        return "avx512-vpopcntdq"
    if name in _AVX2_CPUS:
        return "avx2"
    return "generic"


def wide_registers() -> bool:
    """32 vector registers of 512 bits (AVX-512): the kernels take the larger register block."""
    return isa_path() == "avx512-vpopcntdq"


def int8_gemm_kind() -> str:
    """'int8' (torch._int_mm) where the host has int8 dot-product instructions (AVX-512 VNNI or
    AVX-VNNI) and the kernels are compiled for the host itself; else 'float'. An engine compiled
    for an older CPU (NUMBA_CPU_NAME=haswell) stands for a machine without them, so it takes the
    float GEMM too. BITNAS_INT8_GEMM=int8|float forces one (benchmarks/int8_gemm.py compares both)."""
    forced = os.environ.get(INT8_GEMM_ENV, "").strip().lower()
    if forced:
        if forced not in INT8_GEMM_KINDS:
            raise UserError(f"{INT8_GEMM_ENV}: one of {', '.join(INT8_GEMM_KINDS)} (got {forced!r})")
        return forced
    return _int8_gemm_from_cpu()


@functools.lru_cache(maxsize=None)
def _int8_gemm_from_cpu() -> str:
    # cached: every quantized layer a compile builds asks, and /proc/cpuinfo does not change
    flags = cpu_flags()
    has_vnni = "avx512_vnni" in flags or "avx_vnni" in flags
    return "int8" if has_vnni and isa_path() == _host_path(flags) else "float"


def describe() -> dict:
    """The path and the evidence for it, for benchmark rows and latency records."""
    from numba.core import config

    flags = cpu_flags()
    return {"isa_path": isa_path(), "int8_gemm": int8_gemm_kind(),
            "numba_cpu_name": config.CPU_NAME or os.environ.get("NUMBA_CPU_NAME") or "host",
            "numba_cpu_features": config.CPU_FEATURES or os.environ.get("NUMBA_CPU_FEATURES") or "",
            "host_flags": sorted(flag for flag in ("avx2", "avx512f", "avx512_vpopcntdq", "avx512_vnni",
                                                    "avx512_bitalg", "avx_vnni") if flag in flags)}


__all__ = ["INT8_GEMM_ENV", "cpu_flags", "describe", "int8_gemm_kind", "isa_path", "wide_registers"]
