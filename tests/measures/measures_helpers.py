"""Helpers for the measures tests (small Zarr stores)."""

import numpy as np

from convergent.activations import ActivationStoreWriter


def write_store(path, arrays: dict, labels, chunk_rows=7, chunk_features=4096):
    """A small Zarr activation store with the given layers (float32) and targets."""
    n = len(labels)
    with ActivationStoreWriter(path, n, chunk_rows=chunk_rows, chunk_features=chunk_features) as w:
        for name, a in arrays.items():
            w.create(name, a.shape[1:])
        w.create("targets", (), dtype="int64")
        for name, a in arrays.items():
            w.append(name, a.astype(np.float32))
        w.append("targets", np.asarray(labels, dtype=np.int64))
    return path
