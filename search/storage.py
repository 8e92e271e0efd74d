"""Where studies live: an Optuna journal file under the results directory (the embedded default).

All studies of one results directory share `optuna.journal`, so `optuna.load_study(name, storage)`
and other Optuna tools can open any of them.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from .config import ConfigError

JOURNAL_NAME = "optuna.journal"


def journal_path(results: Path) -> Path:
    return results / JOURNAL_NAME


def open_storage(results: Path) -> JournalStorage:
    """The study storage of a results directory (created on first write)."""
    return JournalStorage(JournalFileBackend(str(journal_path(results))))


def load_existing_study(results: Path, name: str) -> optuna.Study:
    """A study that must already exist; otherwise one line naming what exists instead."""
    path = journal_path(results)
    if not path.is_file():
        raise ConfigError(f"unknown study {name!r}: no studies under {results}/ (no {path.name}); run `bitnas search` first")
    storage = open_storage(results)
    names = [summary.study_name for summary in optuna.get_all_study_summaries(storage)]
    if name not in names:
        known = ", ".join(sorted(names)) or "none"
        raise ConfigError(f"unknown study {name!r} in {path}; known studies: {known}")
    return optuna.load_study(study_name=name, storage=storage)
