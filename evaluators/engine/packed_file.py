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
from .ops import BinaryConvStep, TorchStep

FORMAT, VERSION = "bitnas-packed-engine", 1
HEADER = "__header__"
BINARY_ARRAYS = ("shift", "weights", "scale", "bias")


class PackedFileError(UserError):
    """A packed model file that cannot be read; the message names the file and the problem."""


def _module_arrays(prefix: str, module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {f"{prefix}{key}": tensor.detach().cpu().numpy() for key, tensor in module.state_dict().items()}


def save_packed(engine: EngineModel, genotype, path: Path, *, preprocessing: dict | None = None,
                extra: dict | None = None) -> Path:
    """Write `engine` (compiled from `build_model(genotype)`) to `path` (.npz)."""
    arrays: dict[str, np.ndarray] = {}
    steps = []
    for index, step in enumerate(engine.steps):
        prefix = f"s{index}."
        if isinstance(step, BinaryConvStep):
            steps.append({"type": "binary", "name": step.name, "kernel": step.kernel, "stride": step.stride,
                          "padding": step.padding, "in_channels": step.in_channels, "shortcut": step.shortcut})
            for key in BINARY_ARRAYS:
                arrays[prefix + key] = np.ascontiguousarray(getattr(step, key))
            if step.shortcut_module is not None:
                arrays.update(_module_arrays(prefix + "shortcut.", step.shortcut_module))
        elif isinstance(step, TorchStep):
            steps.append({"type": "torch", "name": step.name, "backend": step.backend, "reason": step.reason})
            arrays.update(_module_arrays(prefix, step.module))
        else:
            raise PackedFileError(f"engine step {getattr(step, 'name', index)!r} of type {type(step).__name__} "
                                  "cannot be saved")
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
    state = {key[len(prefix):]: torch.from_numpy(archive[key].copy()) for key in archive.files if key.startswith(prefix)}
    # Keys of one step never share a prefix with another's shortcut ("s3." vs "s3.shortcut.").
    state = {k: v for k, v in state.items() if not k.startswith("shortcut.") or prefix.endswith("shortcut.")}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise PackedFileError(f"{path}: stored tensors do not fit step {prefix!r}: {str(error).splitlines()[0]}") from None


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
            prefix = f"s{index}."
            if stored["type"] == "binary":
                if not isinstance(step, BinaryConvStep):
                    raise PackedFileError(f"{path}: step {step.name} is packed in the file but not by this bitnas")
                for key in BINARY_ARRAYS:
                    setattr(step, key, np.ascontiguousarray(archive[prefix + key]))
                if step.shortcut_module is not None:
                    _load_module(step.shortcut_module, prefix + "shortcut.", archive, path)
            else:
                if not isinstance(step, TorchStep):
                    raise PackedFileError(f"{path}: step {step.name} runs in torch in the file but is packed here")
                _load_module(step.module, prefix, archive, path)
    return engine, header


__all__ = ["FORMAT", "PackedFileError", "load_packed", "read_header", "save_packed"]
