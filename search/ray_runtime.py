"""The Ray side of the driver: start a local Ray on loopback, run tasks, wait, cancel, shut down.

Ray is the only place trials are dispatched; nothing else in bitnas imports it.
"""

from __future__ import annotations

import logging
import os
from typing import Callable

# Before Ray is imported: keep every Ray address on loopback and send no usage statistics.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402
from ray.exceptions import RayTaskError  # noqa: E402


class RayRuntime:
    def __init__(self, owns_ray: bool):
        self.owns_ray = owns_ray

    @classmethod
    def start(cls, *, workers: int, out: Callable[[str], None]) -> RayRuntime:
        if ray.is_initialized():
            return cls(owns_ray=False)
        out(f"starting a local Ray on 127.0.0.1 with {workers} worker slot(s) ...")
        ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR, _node_ip_address="127.0.0.1")
        return cls(owns_ray=True)

    @staticmethod
    def remote(function: Callable) -> ray.remote_function.RemoteFunction:
        # No automatic retry: a failed evaluation is recorded as a failed trial, with its reason.
        return ray.remote(num_cpus=1, max_retries=0)(function)

    @staticmethod
    def wait(refs: list, timeout: float) -> tuple[list, list]:
        if not refs:
            return [], []
        return ray.wait(refs, num_returns=1, timeout=timeout)

    @staticmethod
    def get(ref):
        return ray.get(ref)

    @staticmethod
    def cancel(ref) -> None:
        try:
            ray.cancel(ref, force=True)
        except Exception:  # noqa: BLE001 - the task may already be gone; cancelling is best effort
            pass

    @staticmethod
    def describe_error(error: Exception) -> str:
        """The underlying error of a failed task as one line, without Ray's traceback framing."""
        if isinstance(error, RayTaskError):
            cause = error.cause if getattr(error, "cause", None) is not None else error
            return f"{type(cause).__name__}: {cause}".splitlines()[0][:500]
        return f"{type(error).__name__}: {error}".splitlines()[0][:500]

    def shutdown(self) -> None:
        if self.owns_ray and ray.is_initialized():
            ray.shutdown()
