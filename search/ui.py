"""`bitnas ui`: the MLflow UI on a results directory's store, bound to loopback unless the user
asks otherwise (the UI has no login: anyone who reaches the port can read and delete runs)."""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import sys
from pathlib import Path

from bitnas.errors import UserError

from .tracking import DB_NAME, tracking_uri


class UiError(UserError):
    """The UI cannot start; the message says why."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ui_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{f'[{shown}]' if ':' in shown else shown}:{port}"


def ui_command(results: Path, host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri(results),
            "--host", host, "--port", str(port), "--workers", "1"]


def check_ui_inputs(results: Path, host: str, port: int) -> None:
    if not 1 <= port <= 65535:
        raise UiError(f"--port: must be 1-65535 (got {port})")
    if not (results / DB_NAME).is_file():
        raise UiError(f"no MLflow store at {results / DB_NAME}: run `bitnas search --results {results}` first")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UiError(f"cannot listen on {host}:{port} ({error.strerror}); choose another --port or --host") from None


def serve_ui(results: Path, *, host: str = "127.0.0.1", port: int = 5000, out=print) -> int:
    """Run the MLflow UI in the foreground until Ctrl-C; returns its exit code."""
    check_ui_inputs(results, host, port)
    if not is_loopback(host):
        print(f"bitnas: warning: the MLflow UI will listen on {host}, reachable from other machines; it has no "
              "login, so anyone who reaches it can read and delete runs", file=sys.stderr)
    out(f"MLflow UI for {results / DB_NAME}: {ui_url(host, port)}   (Ctrl-C stops it)")
    process = subprocess.Popen(ui_command(results, host, port))
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        return 0
