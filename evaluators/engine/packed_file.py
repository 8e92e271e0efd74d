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
from bitnas.spaces.budget import check_budget

from .compiler import EngineModel, compile_model
from .native_blocks import NativeChainStep, NativeConv, NativeConvStep, NativeLinear
from .ops import BinaryConvStep, ReActStep, TorchStep

# Version 2 adds the native quantized layers (2/4/8-bit); a version-1 file holds none, so it reads the same.
# Version 3 runs a quantized mbconv block as one chain of native convs (type "chain"); a version-2 file
# reads the same unless it holds such a block (then it says to export again).
FORMAT, VERSION, READS = "bitnas-packed-engine", 3, (1, 2, 3)
# Keys of a step's native layers: `s3!native.<module path>.<field>`. A step's torch tensors sit under
# `s3.`, which no native key extends, so each loader sees only its own keys.
NATIVE = "!native."
HEADER = "__header__"
BINARY_ARRAYS = ("shift", "weights", "scale", "bias")
MAX_HEADER_BYTES = 4 * 2**20


class PackedFileError(UserError):
    """A packed model file that cannot be read; the message names the file and the problem."""


def _module_arrays(prefix: str, module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {f"{prefix}{key}": tensor.detach().cpu().numpy() for key, tensor in module.state_dict().items()}


def _native_layers(step) -> list[tuple[str, object]]:
    """(module path, NativeQuantConv) of every native layer a step runs, inside torch modules too."""
    if isinstance(step, NativeConvStep):
        return [("layer", step.layer)]
    module = step.module if isinstance(step, TorchStep) else getattr(step, "shortcut_module", None)
    if module is None:
        return []
    return [(name or "module", m.layer.conv if isinstance(m, NativeLinear) else m.layer)
            for name, m in module.named_modules() if isinstance(m, (NativeConv, NativeLinear))]


def _layer_fields(layer) -> dict[str, tuple[object, str, np.ndarray]]:
    """field -> (owner, attribute, value as an array) of a native layer's numbers (its quantizer's included)."""
    fields = {}
    for owner, label in ((layer, ""), (layer.acts, "acts.")):
        for attribute, value in vars(owner).items():
            if isinstance(value, torch.Tensor):
                fields[label + attribute] = (owner, attribute, value.numpy())
            elif isinstance(value, (np.ndarray, np.generic)):
                fields[label + attribute] = (owner, attribute, np.asarray(value))
    return fields


def native_layers(steps: list) -> list[object]:
    """Every native quantized layer (NativeQuantConv) that `steps` run, inside chains and ReAct
    blocks too: the layers a packed file stores, in its order."""
    found = []
    for step in steps:
        if isinstance(step, (ReActStep, NativeChainStep)):
            found += native_layers(step.parts())
        else:
            found += [layer for _, layer in _native_layers(step)]
    return found


def _save_native(step, prefix: str, arrays: dict[str, np.ndarray]) -> None:
    for path, layer in _native_layers(step):
        for field, (_, _, value) in _layer_fields(layer).items():
            arrays[f"{prefix[:-1]}{NATIVE}{path}.{field}"] = np.array(value, order="C")  # 0-d stays 0-d


def _load_native(step, prefix: str, archive, path: Path) -> None:
    for module_path, layer in _native_layers(step):
        for field, (owner, attribute, like) in _layer_fields(layer).items():
            stored = _stored_array(archive, f"{prefix[:-1]}{NATIVE}{module_path}.{field}", like, path)
            current = getattr(owner, attribute)
            if isinstance(current, torch.Tensor):
                stored = torch.from_numpy(stored.copy())
            elif isinstance(current, np.generic):  # a quantizer's scalar (step, level)
                stored = stored.reshape(()).dtype.type(stored.reshape(())[()])
            setattr(owner, attribute, stored)


def _save_step(step, prefix: str, arrays: dict[str, np.ndarray]) -> dict:
    """The header entry of one step; its numbers go into `arrays` under `prefix`."""
    _save_native(step, prefix, arrays)
    if isinstance(step, NativeConvStep):
        return {"type": "native", "name": step.name, "path": step.layer.path}
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
    if isinstance(step, (ReActStep, NativeChainStep)):
        return {"type": "react" if isinstance(step, ReActStep) else "chain", "name": step.name,
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
    stored = archive[HEADER]
    if stored.dtype != np.uint8 or stored.ndim != 1 or stored.size > MAX_HEADER_BYTES:
        raise PackedFileError(f"{path}: header: expected at most {MAX_HEADER_BYTES:,} bytes of JSON")
    try:
        header = json.loads(stored.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise PackedFileError(f"{path}: header: not valid JSON ({type(error).__name__})") from None
    if not isinstance(header, dict):
        raise PackedFileError(f"{path}: header: expected a JSON object")
    if header.get("format") != FORMAT or header.get("version") not in READS:
        raise PackedFileError(f"{path}: format {header.get('format')!r} version {header.get('version')!r}; "
                              f"this bitnas reads {FORMAT!r} versions {', '.join(map(str, READS))}")
    return header


def _check_header(path: Path, header: dict, genotype) -> None:
    """Every header field typed and consistent with the genotype before anything is compiled."""
    shape = [genotype.in_channels, genotype.input_size, genotype.input_size]
    if header.get("input_shape") != shape:
        raise PackedFileError(f"{path}: header field input_shape: {header.get('input_shape')!r} does not match the "
                              f"genotype's {shape}")
    if not isinstance(header.get("steps"), list) or not all(isinstance(s, dict) for s in header["steps"]):
        raise PackedFileError(f"{path}: header field steps: expected a list of step objects")
    prep = header.get("preprocessing", {})
    if not isinstance(prep, dict):
        raise PackedFileError(f"{path}: header field preprocessing: expected an object")
    # Each field is checked where present (a model saved without preprocessing runs on arrays).
    channels = genotype.in_channels
    for key, wanted in (("channels", channels), ("size", genotype.input_size)):
        if key in prep and prep[key] != wanted:
            raise PackedFileError(f"{path}: header field preprocessing.{key}: {prep[key]!r}, but the network's "
                                  f"input is {shape}")
    for key in ("mean", "std"):
        values = prep.get(key, [1.0] * channels)
        if (not isinstance(values, list) or len(values) != channels
                or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in values)):
            raise PackedFileError(f"{path}: header field preprocessing.{key}: expected {channels} finite numbers")
    if any(v <= 0 for v in prep.get("std", [1.0])):
        raise PackedFileError(f"{path}: header field preprocessing.std: every value must be positive")
    names = prep.get("class_names", [])
    if not isinstance(names, list) or (names and len(names) != genotype.num_classes) or \
            not all(isinstance(n, str) and len(n) <= 200 for n in names):
        raise PackedFileError(f"{path}: header field preprocessing.class_names: expected "
                              f"{genotype.num_classes} names")


def _stored_array(archive, key: str, like: np.ndarray, path: Path) -> np.ndarray:
    """The stored array `key`, which must have the dtype and shape of `like` (what this bitnas
    compiles for the genotype): the numba kernels index by those shapes and check no bounds."""
    if key not in archive.files:
        raise PackedFileError(f"{path}: array {key}: missing")
    stored = archive[key]
    if stored.dtype != like.dtype or stored.shape != like.shape:
        raise PackedFileError(f"{path}: array {key}: {stored.dtype} {tuple(stored.shape)}, expected "
                              f"{like.dtype} {tuple(like.shape)}")
    return np.ascontiguousarray(stored)


def _load_module(module: torch.nn.Module, prefix: str, archive, path: Path) -> None:
    # Every key under a torch step's prefix is its own: no other step's prefix extends it.
    expected = module.state_dict()
    state = {}
    for key in archive.files:
        if key.startswith(prefix):
            name = key[len(prefix):]
            like = expected.get(name)
            if like is None:
                raise PackedFileError(f"{path}: array {key}: not a tensor of step {prefix!r}")
            state[name] = torch.from_numpy(_stored_array(archive, key, like.numpy(), path).copy())
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise PackedFileError(f"{path}: stored tensors do not fit step {prefix!r}: {str(error).splitlines()[0]}") from None


def _load_step(step, stored: dict, prefix: str, archive, path: Path) -> None:
    """Overwrite the numbers of `step` (compiled here from the genotype) with the stored ones."""
    kinds = {"binary": BinaryConvStep, "torch": TorchStep, "react": ReActStep, "native": NativeConvStep,
             "chain": NativeChainStep}
    if isinstance(step, NativeChainStep) and stored.get("type") == "torch":
        raise PackedFileError(f"{path}: step {step.name} was written by a bitnas that ran quantized mbconv "
                              f"blocks in torch; export the model again")
    if not isinstance(step, kinds.get(stored.get("type"), ())):
        raise PackedFileError(f"{path}: step {step.name} is {stored.get('type')!r} in the file but "
                              f"{type(step).__name__} in this bitnas")
    _load_native(step, prefix, archive, path)
    if isinstance(step, NativeConvStep):
        return
    if isinstance(step, BinaryConvStep):
        for key in BINARY_ARRAYS:
            setattr(step, key, _stored_array(archive, prefix + key, getattr(step, key), path))
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
        if isinstance(step, ReActStep):
            step.numbers_loaded()


def load_packed(path: Path) -> tuple[EngineModel, dict]:
    """(engine model, header) from a file written by `save_packed`; nothing is unpickled."""
    try:
        return _load(path)
    except (KeyError, TypeError, ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error) as error:
        if isinstance(error, UserError):
            raise
        raise PackedFileError(f"{path}: damaged packed model file ({type(error).__name__}: {error})") from None


def _load(path: Path) -> tuple[EngineModel, dict]:
    from bitnas.spaces import Genotype, build_model

    with _open(path) as archive:
        header = _header(path, archive)
        if not isinstance(header.get("genotype"), dict):
            raise PackedFileError(f"{path}: header field genotype: expected an object")
        try:
            genotype = Genotype.from_dict(header["genotype"])
        except UserError as error:
            raise PackedFileError(f"{path}: header field genotype: {error}") from None
        check_budget(genotype, f"{path}: ")
        _check_header(path, header, genotype)
        engine = compile_model(build_model(genotype).eval(), header["input_shape"])
        if [s.name for s in engine.steps] != [s["name"] for s in header["steps"]]:
            raise PackedFileError(f"{path}: its steps do not match what this bitnas compiles for the genotype")
        for index, (step, stored) in enumerate(zip(engine.steps, header["steps"])):
            _load_step(step, stored, f"s{index}.", archive, path)
    return engine, header


__all__ = ["FORMAT", "PackedFileError", "load_packed", "native_layers", "read_header", "save_packed"]
