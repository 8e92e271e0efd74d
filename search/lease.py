"""One driver per study: a lease kept in the study's own storage.

The driver is the single owner of its study (design.md). A second `bitnas search` on a study that
a live driver holds is refused with a clear message instead of corrupting it. A lease whose
holder is dead (same host, process gone) or silent for longer than LEASE_TIMEOUT_S (another host)
is taken over, which is what lets a search killed outright be resumed at once.
"""

from __future__ import annotations

import os
import socket
import time

import optuna

from .config import ConfigError

LEASE_KEY = "bitnas:driver"
LEASE_REFRESH_S = 20.0
LEASE_TIMEOUT_S = 90.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DriverLease:
    def __init__(self, study: optuna.Study):
        self.study = study
        self.holder = {"host": socket.gethostname(), "pid": os.getpid()}
        self.last_refresh = float("-inf")

    def acquire(self) -> None:
        current = self.study.user_attrs.get(LEASE_KEY)
        if current and current.get("released") is not True and not self._is_stale(current):
            raise ConfigError(f"study {self.study.study_name!r} is being searched by another bitnas process "
                              f"(pid {current['pid']} on {current['host']}); wait for it or stop it first")
        self.refresh(force=True)

    def _is_stale(self, lease: dict) -> bool:
        if lease.get("host") == self.holder["host"]:
            return lease.get("pid") == self.holder["pid"] or not _alive(int(lease.get("pid", -1)))
        return time.time() - float(lease.get("time", 0)) > LEASE_TIMEOUT_S

    def refresh(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last_refresh >= LEASE_REFRESH_S:
            self.study.set_user_attr(LEASE_KEY, {**self.holder, "time": time.time(), "released": False})
            self.last_refresh = now

    def release(self) -> None:
        self.study.set_user_attr(LEASE_KEY, {**self.holder, "time": time.time(), "released": True})
