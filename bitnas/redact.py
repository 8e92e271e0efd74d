"""Secrets out of the record: the password of a URL (a study storage or tracking server such as
`postgresql://user:secret@host/db`) is never logged, stored or printed.

The search keeps what it was given in memory to connect; everything it writes (MLflow parameters
and `config.json`, the study's user attributes, the summary, error lines) passes through here.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
# scheme://user:password@host... : the password is what sits between the first ':' after the
# scheme's '//' and the last '@' before the host.
_CREDENTIALS = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@?#]*):(?P<password>[^@/?#]*)@")
# Keys of the search config whose values are connection URLs.
URL_KEYS = ("storage", "tracking_uri")


def redact_url(url: str) -> str:
    """`postgresql://user:***@host/db` for `postgresql://user:secret@host/db`; other text unchanged."""
    return _CREDENTIALS.sub(lambda m: f"{m.group('head')}:{MASK}@", url, count=1)


def has_password(url: str | None) -> bool:
    return bool(url) and _CREDENTIALS.match(url) is not None


def redact_config(data: dict[str, Any]) -> dict[str, Any]:
    """A config dump (`SearchConfig.model_dump(mode="json")`) with the passwords of its URLs masked;
    `ray.address` too (a Ray client URL may carry credentials)."""
    clean = dict(data)
    for key in URL_KEYS:
        if isinstance(clean.get(key), str):
            clean[key] = redact_url(clean[key])
    if isinstance(clean.get("ray"), dict) and isinstance(clean["ray"].get("address"), str):
        clean["ray"] = {**clean["ray"], "address": redact_url(clean["ray"]["address"])}
    return clean
