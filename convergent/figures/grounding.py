"""Kornblith et al.'s grounding test on a cross-layer similarity matrix (no plotting imports).

For each layer of network A, the most similar layer of network B should be the same layer;
linear CKA passed this test 99.3 % of the time across ten CIFAR-10 CNNs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PAIR_KEYS = ["dataset", "arch", "width", "frozen_k", "seed_a", "seed_b"]


def grounded_layers(matrix: np.ndarray) -> np.ndarray:
    """Boolean per row i of a square similarity matrix (rows: layers of A, columns: layers of B):
    is layer i of B among the most similar layers of B to layer i of A?

    Ties count as grounded when the matching layer is one of the maximisers (frozen layers
    copied into both networks are identical, so exact ties of 1.0 do occur). NaN entries are
    ignored; a row that is all NaN is not grounded.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"need a non-empty square matrix, got shape {m.shape}")
    out = np.zeros(m.shape[0], dtype=bool)
    for i, row in enumerate(m):
        if np.isfinite(row).any() and np.isfinite(row[i]):
            out[i] = row[i] >= np.nanmax(row)
    return out


def grounding_fraction(matrix: np.ndarray) -> float:
    """Fraction of layers of A whose most similar layer of B is the same layer (see :func:`grounded_layers`)."""
    return float(grounded_layers(matrix).mean())


def layer_matrix(pair: pd.DataFrame, value: str = "cka_linear") -> pd.DataFrame:
    """One pair's tidy cross-layer rows as a matrix: index layer_a, columns layer_b, in depth order."""
    order_a = pair.drop_duplicates("layer_a").sort_values("layer_index_a")["layer_a"].tolist()
    order_b = pair.drop_duplicates("layer_b").sort_values("layer_index_b")["layer_b"].tolist()
    return pair.pivot(index="layer_a", columns="layer_b", values=value).loc[order_a, order_b]


def grounding_table(cka_layers: pd.DataFrame, value: str = "cka_linear") -> pd.DataFrame:
    """Grounding per pair of ``results/summary/cka_layers.csv``.

    Columns: the pair keys, ``n_layers``, ``n_grounded`` and ``grounding_fraction``. Pool over
    pairs as ``n_grounded.sum() / n_layers.sum()`` (Kornblith et al. pool over layers and pairs).
    """
    keys = [k for k in PAIR_KEYS if k in cka_layers.columns]
    rows = []
    for key, pair in cka_layers.groupby(keys, sort=True):
        g = grounded_layers(layer_matrix(pair, value).to_numpy())
        rows.append({**dict(zip(keys, key)), "n_layers": int(g.size), "n_grounded": int(g.sum()),
                     "grounding_fraction": float(g.mean())})
    return pd.DataFrame(rows, columns=[*keys, "n_layers", "n_grounded", "grounding_fraction"])
