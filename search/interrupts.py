"""Stopping a search cleanly on Ctrl-C or SIGTERM, without ever cutting a trial's record in half."""

from __future__ import annotations

import signal
from contextlib import contextmanager


class Interrupts:
    """Ctrl-C (SIGINT) and SIGTERM stop the search with KeyboardInterrupt, but never inside a
    `shielded()` section: there the signal is held until the section ends, so that a trial is
    always recorded whole (study storage and MLflow together) or not at all."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.depth, self.deferred, self.previous = 0, False, {}

    def __enter__(self):
        for number in self.SIGNALS:
            self.previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        return False

    def _handle(self, signum, frame):
        if self.depth:
            self.deferred = True
        else:
            raise KeyboardInterrupt

    @contextmanager
    def shielded(self):
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if not self.depth and self.deferred:
                self.deferred = False
                raise KeyboardInterrupt
