"""Where studies live. By default an Optuna journal file under the results directory; with
`storage:` (or `--storage`) an Optuna RDB database such as PostgreSQL, which several machines and
tools (optuna-dashboard, `optuna.load_study`) can reach at once.

All studies of one storage live side by side and are found by name.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from bitnas.redact import redact_url

from .config import ConfigError
from .services import SERVICE_TIMEOUT_S

JOURNAL_NAME = "optuna.journal"


def journal_path(results: Path) -> Path:
    return results / JOURNAL_NAME


def describe_storage(results: Path, url: str | None) -> str:
    """Where the study lives, for messages and records: never with a password (bitnas.redact)."""
    return redact_url(url) if url else str(journal_path(results))


def open_storage(results: Path, url: str | None = None) -> BaseStorage:
    """The study storage: the journal under `results` (created on first write), or the RDB at `url`."""
    if url is None:
        return JournalStorage(JournalFileBackend(str(journal_path(results))))
    try:
        # pool_pre_ping: a long search outlives idle database connections; a server that does not
        # answer is reported after SERVICE_TIMEOUT_S instead of hanging.
        engine_kwargs: dict = {"pool_pre_ping": True}
        if url.startswith(("postgresql", "mysql")):
            engine_kwargs["connect_args"] = {"connect_timeout": int(SERVICE_TIMEOUT_S)}
        return RDBStorage(url, engine_kwargs=engine_kwargs)
    except Exception as error:  # noqa: BLE001 - any failure to reach the database is the user's to fix
        reason = redact_url(str(getattr(error, "orig", None) or error).strip().splitlines()[0])
        raise ConfigError(f"cannot open study storage {redact_url(url)}: {reason}") from None


def study_names(storage: BaseStorage) -> list[str]:
    return [summary.study_name for summary in optuna.get_all_study_summaries(storage, include_best_trial=False)]


def load_existing_study(results: Path, name: str, url: str | None = None) -> optuna.Study:
    """A study that must already exist; otherwise one line naming what exists instead."""
    if url is None and not journal_path(results).is_file():
        raise ConfigError(f"unknown study {name!r}: no studies under {results}/ (no {JOURNAL_NAME}); "
                          f"run `bitnas search` first")
    storage = open_storage(results, url)
    names = study_names(storage)
    if name not in names:
        known = ", ".join(sorted(names)) or "none"
        raise ConfigError(f"unknown study {name!r} in {describe_storage(results, url)}; known studies: {known}")
    return optuna.load_study(study_name=name, storage=storage)
