"""A compiled engine model as one file that loads without pickle: an `.npz` archive read with
`allow_pickle=False`, holding plain arrays (packed uint64 sign words, scales, thresholds, the
full-precision layers' tensors) and a JSON header (format, genotype, step list, preprocessing).

Loading rebuilds the network from the genotype only to get the step structure (the compiler's
own), then overwrites every step's numbers with the stored ones, so a loaded model computes
exactly what the saved one did. The binary convolutions' latent float weights are not stored:
only their packed signs.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from bitnas.errors import UserError

from .compiler import EngineModel, compile_model
from .ops import BinaryConvStep, ReActStep, TorchStep

FORMAT, VERSION = "bitnas-packed-engine", 1
HEADER = "__header__"
BINARY_ARRAYS = ("shift", "weights", "scale", "bias")


class PackedFileError(UserError):
    """A packed model file that cannot be read; the message names the file and the problem."""


def _module_arrays(prefix: str, module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {f"{prefix}{key}": tensor.detach().cpu().numpy() for key, tensor in module.state_dict().items()}


def _save_step(step, prefix: str, arrays: dict[str, np.ndarray]) -> dict:
    """The header entry of one step; its numbers go into `arrays` under `prefix`."""
    if isinstance(step, BinaryConvStep):
        for key in BINARY_ARRAYS:
            arrays[prefix + key] = np.ascontiguousarray(getattr(step, key))
        if step.shortcut_module is not None:
            arrays.update(_module_arrays(prefix + "shortcut.", step.shortcut_module))
        return {"type": "binary", "name": step.name, "kernel": step.kernel, "stride": step.stride,
                "padding": step.padding, "in_channels": step.in_channels, "shortcut": step.shortcut}
    if isinstance(step, TorchStep):
        arrays.update(_module_arrays(prefix, step.module))
        return {"type": "torch", "name": step.name, "backend": step.backend, "reason": step.reason}
    if isinstance(step, ReActStep):
        return {"type": "react", "name": step.name,
                "parts": [_save_step(part, f"{prefix}{i}.", arrays) for i, part in enumerate(step.parts())]}
    raise PackedFileError(f"engine step {getattr(step, 'name', '?')!r} of type {type(step).__name__} cannot be saved")


def save_packed(engine: EngineModel, genotype, path: Path, *, preprocessing: dict | None = None,
                extra: dict | None = None) -> Path:
    """Write `engine` (compiled from `build_model(genotype)`) to `path` (.npz)."""
    arrays: dict[str, np.ndarray] = {}
    steps = [_save_step(step, f"s{index}.", arrays) for index, step in enumerate(engine.steps)]
    header = {"format": FORMAT, "version": VERSION, "genotype": genotype.to_dict(), "input_shape": list(engine.input_shape),
              "steps": steps, "preprocessing": preprocessing or {}, **(extra or {})}
    arrays[HEADER] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    path = Path(path)
    with path.open("wb") as handle:  # np.savez would append .npz to a name without it
        np.savez_compressed(handle, **arrays)
    return path


def read_header(path: Path) -> dict:
    with _open(path) as archive:
        return _header(path, archive)


def _open(path: Path):
    try:
        return np.load(Path(path), allow_pickle=False)
    except FileNotFoundError:
        raise PackedFileError(f"{path}: packed model file not found") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise PackedFileError(f"{path}: not a packed model file ({error})") from None


def _header(path: Path, archive) -> dict:
    if HEADER not in archive.files:
        raise PackedFileError(f"{path}: not a bitnas packed model (no header)")
    header = json.loads(archive[HEADER].tobytes().decode())
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise PackedFileError(f"{path}: format {header.get('format')!r} version {header.get('version')!r}; "
                              f"this bitnas reads {FORMAT!r} version {VERSION}")
    return header


def _load_module(module: torch.nn.Module, prefix: str, archive, path: Path) -> None:
    # Every key under a torch step's prefix is its own: no other step's prefix extends it.
    state = {key[len(prefix):]: torch.from_numpy(archive[key].copy()) for key in archive.files if key.startswith(prefix)}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise PackedFileError(f"{path}: stored tensors do not fit step {prefix!r}: {str(error).splitlines()[0]}") from None


def _load_step(step, stored: dict, prefix: str, archive, path: Path) -> None:
    """Overwrite the numbers of `step` (compiled here from the genotype) with the stored ones."""
    kinds = {"binary": BinaryConvStep, "torch": TorchStep, "react": ReActStep}
    if not isinstance(step, kinds.get(stored.get("type"), ())):
        raise PackedFileError(f"{path}: step {step.name} is {stored.get('type')!r} in the file but "
                              f"{type(step).__name__} in this bitnas")
    if isinstance(step, BinaryConvStep):
        for key in BINARY_ARRAYS:
            setattr(step, key, np.ascontiguousarray(archive[prefix + key]))
        if step.shortcut_module is not None:
            _load_module(step.shortcut_module, prefix + "shortcut.", archive, path)
    elif isinstance(step, TorchStep):
        _load_module(step.module, prefix, archive, path)
    else:
        parts = step.parts()
        if len(parts) != len(stored["parts"]):
            raise PackedFileError(f"{path}: step {step.name} has {len(stored['parts'])} parts in the file, "
                                  f"{len(parts)} here")
        for i, (part, stored_part) in enumerate(zip(parts, stored["parts"])):
            _load_step(part, stored_part, f"{prefix}{i}.", archive, path)


def load_packed(path: Path) -> tuple[EngineModel, dict]:
    """(engine model, header) from a file written by `save_packed`; nothing is unpickled."""
    try:
        return _load(path)
    except (KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        if isinstance(error, UserError):
            raise
        raise PackedFileError(f"{path}: damaged packed model file ({type(error).__name__}: {error})") from None


def _load(path: Path) -> tuple[EngineModel, dict]:
    from bitnas.spaces import Genotype, build_model

    with _open(path) as archive:
        header = _header(path, archive)
        genotype = Genotype.from_dict(header["genotype"])
        engine = compile_model(build_model(genotype).eval(), header["input_shape"])
        if [s.name for s in engine.steps] != [s["name"] for s in header["steps"]]:
            raise PackedFileError(f"{path}: its steps do not match what this bitnas compiles for the genotype")
        for index, (step, stored) in enumerate(zip(engine.steps, header["steps"])):
            _load_step(step, stored, f"s{index}.", archive, path)
    return engine, header


__all__ = ["FORMAT", "PackedFileError", "load_packed", "read_header", "save_packed"]
