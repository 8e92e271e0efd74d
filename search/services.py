"""Services a search depends on, checked before anything is written: a Ray cluster to join, an
MLflow tracking server, a study database. One that does not answer within `SERVICE_TIMEOUT_S` is
one line naming it, instead of a hang of minutes after the study was created.

Only the address the user configured is contacted, once.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from bitnas.errors import UserError
from bitnas.redact import redact_url

SERVICE_TIMEOUT_S = 10.0


class ServiceUnreachable(UserError):
    """A configured service did not answer in time; the message names it and how long was waited."""


def _tcp(host: str, port: int, what: str, shown: str, timeout: float) -> None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except socket.timeout:
        raise ServiceUnreachable(f"{what} {shown} did not answer within {timeout:g} s") from None
    except OSError as error:
        raise ServiceUnreachable(f"{what} {shown} cannot be reached ({error.strerror or error})") from None


def check_ray_address(address: str | None, timeout: float = SERVICE_TIMEOUT_S) -> None:
    """A `HOST:PORT` (or `ray://HOST:PORT`) Ray address must accept a connection; `auto` and the
    embedded default are left to Ray (they name no address)."""
    if address is None or address == "auto" or address == "local":
        return
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    if not parts.hostname or parts.port is None:
        raise ServiceUnreachable(f"--ray-address {redact_url(address)}: expected auto or HOST:PORT")
    _tcp(parts.hostname, parts.port, "the Ray cluster at", redact_url(address), timeout)


def check_tracking_uri(uri: str | None, timeout: float = SERVICE_TIMEOUT_S) -> None:
    """An http(s) tracking server must answer its health check; database URIs are checked when
    the tracking store opens them."""
    if not uri or not uri.startswith(("http://", "https://")):
        return
    shown = redact_url(uri)
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # it answered: the server is there (an older one may have no /health)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, socket.timeout) or "timed out" in str(reason):
            raise ServiceUnreachable(f"the MLflow tracking server {shown} did not answer within {timeout:g} s") from None
        raise ServiceUnreachable(f"the MLflow tracking server {shown} cannot be reached ({reason})") from None
