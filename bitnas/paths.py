"""Directories bitnas will write to, checked before anything is written: a results path that is a
file, read-only, or under a kernel filesystem (/proc, /sys, /dev) is one line, not a traceback
half-way through a search."""

from __future__ import annotations

import os
from pathlib import Path

from bitnas.errors import UserError

# Kernel and device filesystems: writing there is never what a user meant.
FORBIDDEN_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))


class PathError(UserError):
    """A path bitnas cannot use as asked; the message names it and why."""


def directory_problem(path: str | Path) -> str | None:
    """Why `path` cannot be (or be created as) a directory this process writes in; None if it can.
    Creates nothing."""
    absolute = Path(os.path.abspath(Path(path).expanduser()))
    for root in FORBIDDEN_ROOTS:
        if absolute == root or root in absolute.parents:
            return f"under {root}, a kernel filesystem; choose a directory of your own"
    existing = absolute
    while not existing.exists():
        if existing.is_symlink():
            return f"{existing} is a dangling symbolic link"
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable by this user"
    return None


def check_writable_directory(path: str | Path, what: str = "--results") -> Path:
    """`path`, absolute, if it is (or can be created as) a writable directory; else PathError."""
    problem = directory_problem(path)
    if problem:
        raise PathError(f"{what} {path}: {problem}")
    return Path(os.path.abspath(Path(path).expanduser()))
