"""Helpers for tests that start a real server on loopback."""

import subprocess
import time
import urllib.request
from pathlib import Path


def wait_until_healthy(url: str, server: subprocess.Popen, log: Path, what: str, timeout_s: float = 150,
                       path: str = "/health") -> None:
    """Poll `url` + `path` until it answers 200; fail with the server's log if it dies or never answers."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}{path}", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{what} did not start: " + log.read_text()[-2000:])
        time.sleep(0.5)


def stop_session(server: subprocess.Popen) -> None:
    """End a server started with `start_new_session=True` and every process of its session (a
    command that starts its own server: `bitnas ui`, `mlflow models serve` and its uvicorn):
    SIGTERM, then SIGKILL after 20 s."""
    import contextlib
    import os
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# The PostgreSQL server of the test machine (database `test`); tests that need it are skipped where none answers.
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_answers() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=3):
            return True
    except Exception:  # noqa: BLE001 - any failure means: no server to test against here
        return False
