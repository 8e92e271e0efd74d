"""Helpers for tests that start a real server on loopback."""

import subprocess
import time
import urllib.request
from pathlib import Path


def wait_until_healthy(url: str, server: subprocess.Popen, log: Path, what: str, timeout_s: float = 150) -> None:
    """Poll `url`/health until it answers 200; fail with the server's log if it dies or never answers."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{what} did not start: " + log.read_text()[-2000:])
        time.sleep(0.5)
