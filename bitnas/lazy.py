"""Package namespaces whose names are imported on first use.

A package that re-exported everything eagerly would import torch (seconds) for a caller that only
validates a config; with `lazy_namespace`, `from bitnas.spaces import SpaceConfig` loads the one
submodule that defines it.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable


def lazy_namespace(package: str, namespace: dict[str, Any], exports: dict[str, str]) -> Callable[[str], Any]:
    """The module `__getattr__` of `package`: name -> the submodule (relative) that defines it.
    Each name is cached in `namespace` (the package's globals) once imported."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f".{exports[name]}", package), name)
        namespace[name] = value  # later look-ups skip this function
        return value

    return __getattr__
