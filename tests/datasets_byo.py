"""Datasets by import path: ``sweep.datasets: [tests.datasets_byo:small_shapes]``.

A loader returns ``(train, test)``, two torch Datasets of ``(x, y)`` pairs with integer labels.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, TensorDataset


def small_shapes(n_train: int = 200, n_test: int = 100) -> tuple[TensorDataset, TensorDataset]:
    """shapes32 (3 × 32 × 32, ten shape classes) re-exported at a small size, pixels in [0, 1]."""
    from convergent.nets.data import generate_shapes32

    arrays = generate_shapes32(n_train, n_test)

    def split(x, y) -> TensorDataset:
        return TensorDataset(torch.from_numpy(x).float() / 255.0, torch.from_numpy(y))

    return split(arrays["x"], arrays["y"]), split(arrays["x_test"], arrays["y_test"])


class _Pairs(Dataset):
    """A map-style Dataset that is not a TensorDataset: items are (list of floats, int)."""

    def __init__(self, n: int, offset: int):
        self.n, self.offset = n, offset

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        k = (i + self.offset) % 3
        return [float(k), float(i % 5), 1.0], k


def counting(n_train: int = 30, n_test: int = 12) -> tuple[Dataset, Dataset]:
    """Three classes of 3-feature vectors, as plain Python items (tests the generic path)."""
    return _Pairs(n_train, 0), _Pairs(n_test, 1)


def broken() -> tuple[Dataset, Dataset]:
    """A loader whose labels are not integers (the error must name the config key)."""
    x = torch.zeros(4, 2)
    return TensorDataset(x, torch.tensor([0.5, 1.0, 0.0, 1.0])), TensorDataset(x, torch.zeros(4, dtype=torch.long))
