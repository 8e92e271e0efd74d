"""Stopping a search cleanly on Ctrl-C or SIGTERM, without ever cutting a write in half."""

from __future__ import annotations

import signal
from contextlib import contextmanager


class Interrupts:
    """Ctrl-C (SIGINT) and SIGTERM ask the search to stop; the loop stops at its next `check()`.

    The handler itself raises nothing on the first signal: an exception raised wherever the main
    thread happens to be can land inside a database commit (SQLite then keeps its write lock for as
    long as the traceback holds the connection, and every later write of the shutdown waits and
    fails with "database is locked") or inside a garbage-collector callback (where Python swallows
    it and the stop is lost). A second signal is the user insisting: it raises at once, except
    inside a `shielded()` section, which always completes, so that a trial is recorded whole
    (study storage and MLflow together) or not at all."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.depth, self.requested, self.forced, self.previous = 0, False, False, {}

    def __enter__(self):
        for number in self.SIGNALS:
            self.previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        return False

    def _handle(self, signum, frame):
        if not self.requested:
            self.requested = True
            return
        self.forced = True
        if not self.depth:
            raise KeyboardInterrupt

    def check(self) -> None:
        """Raise KeyboardInterrupt here, at a point where nothing is half-written, once a stop was asked."""
        if self.requested and not self.depth:
            raise KeyboardInterrupt

    @contextmanager
    def shielded(self):
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if not self.depth and self.forced:
                raise KeyboardInterrupt
