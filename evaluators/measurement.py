"""Latency and hardware energy measured alone, before training, once per genotype and node.

Why before training: neither depends on the trained weight values (the engine's kernels have no
data-dependent work), so the freshly built network times the same as the trained one, and a
network over a latency or energy budget is rejected before any training is spent on it.

Why alone: with two workers on a node, a latency measured while the other trial trains on the
neighbouring core is slowed by shared caches, memory bandwidth and frequency (and the RAPL
counter reads the whole package, so its energy would include the neighbour's training). Each node
has one measurement slot: a measurement closes a gate that every training step passes, waits for
the steps already under way to finish, measures, and opens the gate again. So one measurement runs
at a time per node, and no training runs on any core while it does.

The slot is two advisory file locks in the node's scratch directory (`flock`, released by the
kernel when a process dies, so a killed worker can never leave the node locked):
- training step: take `gate` shared, take `busy` shared, let go of `gate`; hold `busy` for the step;
- measurement: take `gate` exclusive (no new step starts), then `busy` exclusive (the steps under
  way have finished), measure, release both.
A trainer never waits for `busy` while holding `gate` against a measurer (a measurer only asks for
`busy` once it holds `gate`), so the protocol cannot deadlock.

Measurements are cached in the same directory by what decides them: the genotype, the target and
its settings, the CPU, and the engine's code (a changed kernel is measured anew).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

# Where a node's slot and cache live; one directory per user, shared by every bitnas process on it.
NODE_DIR_ENV = "BITNAS_NODE_DIR"


def node_directory() -> Path:
    configured = os.environ.get(NODE_DIR_ENV)
    folder = Path(configured) if configured else Path(tempfile.gettempdir()) / f"bitnas-node-{os.getuid()}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class MeasurementSlot:
    """The node's one measurement slot (see the module docstring for the protocol)."""

    def __init__(self, directory: Path | None = None):
        self.directory = Path(directory) if directory is not None else node_directory()
        self.directory.mkdir(parents=True, exist_ok=True)
        # flock belongs to an open file description: a process's trainer and measurer sides open
        # their own, so they exclude each other like two processes would.
        self._trainer_files: tuple | None = None
        self._local = threading.Lock()
        self.waited_s = 0.0  # how long this process's training steps waited at the gate

    def _open(self, name: str):
        return open(self.directory / f"measure-{name}.lock", "a+")

    @contextmanager
    def training_step(self) -> Iterator[None]:
        if self._trainer_files is None:
            self._trainer_files = (self._open("gate"), self._open("busy"))
        gate, busy = self._trainer_files
        started = time.perf_counter()
        fcntl.flock(gate, fcntl.LOCK_SH)
        try:
            fcntl.flock(busy, fcntl.LOCK_SH)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        self.waited_s += time.perf_counter() - started
        try:
            yield
        finally:
            fcntl.flock(busy, fcntl.LOCK_UN)

    @contextmanager
    def measuring(self) -> Iterator[float]:
        """Yields the seconds it waited for the slot."""
        started = time.perf_counter()
        with self._local, self._open("gate") as gate, self._open("busy") as busy:
            fcntl.flock(gate, fcntl.LOCK_EX)
            try:
                fcntl.flock(busy, fcntl.LOCK_EX)
                try:
                    yield time.perf_counter() - started
                finally:
                    fcntl.flock(busy, fcntl.LOCK_UN)
            finally:
                fcntl.flock(gate, fcntl.LOCK_UN)


@lru_cache(maxsize=1)
def engine_code_digest() -> str:
    """A digest of the code that decides measured latency (the engine and the timing protocol)."""
    here = Path(__file__).parent
    files = sorted((here / "engine").glob("*.py")) + [here / "latency.py", here / "energy_meter.py"]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class MeasurementKey:
    genotype_hash: str
    target: str
    threads: int
    runs: int
    warmup: int
    energy_meter: str
    mode: str = "measure"

    def digest(self) -> str:
        from .engine.isa import int8_gemm_kind, isa_path
        from .latency import cpu_flags, cpu_model

        # the code paths the engine takes on this CPU count too: NUMBA_CPU_NAME and BITNAS_INT8_GEMM
        # change the latency of the same network on the same machine
        blob = json.dumps({**self.__dict__, "cpu": cpu_model(), "flags": cpu_flags(), "code": engine_code_digest(),
                           "isa_path": isa_path(), "int8_gemm": int8_gemm_kind()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]


class MeasurementCache:
    """Measurements of this node by key, one small JSON file each (written whole, then renamed,
    so a crash mid-write leaves no half file)."""

    def __init__(self, directory: Path | None = None):
        self.directory = (Path(directory) if directory is not None else node_directory()) / "measurements"
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, key: MeasurementKey) -> Path:
        return self.directory / f"{key.digest()}.json"

    def get(self, key: MeasurementKey) -> dict | None:
        try:
            value = json.loads(self._path(key).read_text())
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) and "latency" in value else None

    def put(self, key: MeasurementKey, value: dict) -> None:
        path = self._path(key)
        scratch = path.with_suffix(f".{os.getpid()}.tmp")
        scratch.write_text(json.dumps(value))
        os.replace(scratch, path)


__all__ = ["MeasurementCache", "MeasurementKey", "MeasurementSlot", "NODE_DIR_ENV", "engine_code_digest",
           "node_directory"]
