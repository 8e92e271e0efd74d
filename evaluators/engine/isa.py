"""Which instruction set numba compiles the engine's kernels for, as one short name.

numba compiles for the host CPU unless NUMBA_CPU_NAME / NUMBA_CPU_FEATURES say otherwise
(`NUMBA_CPU_NAME=haswell` gives AVX2 code on an AVX-512 machine, which is how the benchmark
measures both paths on one machine). The path decides the kernels' register blocking and is
recorded with every benchmark row, since a speedup means little without it.
"""

from __future__ import annotations

import functools
import os

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
        flags = cpu_flags()
        if "avx512_vpopcntdq" in flags or "avx512vpopcntdq" in flags:
            return "avx512-vpopcntdq"
        return "avx2" if "avx2" in flags else "generic"
    if name in _VPOPCNT_CPUS:
        return "avx512-vpopcntdq"
    if name in _AVX2_CPUS:
        return "avx2"
    return "generic"


def wide_registers() -> bool:
    """32 vector registers of 512 bits (AVX-512): the kernels take the larger register block."""
    return isa_path() == "avx512-vpopcntdq"


def describe() -> dict:
    """The path and the evidence for it, for benchmark rows and latency records."""
    from numba.core import config

    flags = cpu_flags()
    return {"isa_path": isa_path(), "numba_cpu_name": config.CPU_NAME or os.environ.get("NUMBA_CPU_NAME") or "host",
            "numba_cpu_features": config.CPU_FEATURES or os.environ.get("NUMBA_CPU_FEATURES") or "",
            "host_flags": sorted(flag for flag in ("avx2", "avx512f", "avx512_vpopcntdq", "avx512_vnni",
                                                    "avx512_bitalg") if flag in flags)}


__all__ = ["cpu_flags", "describe", "isa_path", "wide_registers"]
