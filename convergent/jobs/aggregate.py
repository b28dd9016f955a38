"""The aggregation rules (rules/aggregate.smk and the ``*_table`` rules): runs.csv and the concatenated tables."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from convergent.io import read_json, read_table

if TYPE_CHECKING:   # pandas is imported where a job needs it: train and extract jobs never do
    import pandas as pd


#: a run whose test accuracy is ≤ 1/num_classes + this is flagged ``at_chance`` (config ``chance_margin``)
CHANCE_MARGIN = 0.05


def at_chance(test_acc: float, num_classes: int, margin: float = CHANCE_MARGIN) -> bool:
    """Whether ``test_acc`` (fraction) is within ``margin`` of chance, 1/num_classes (or not finite)."""
    import math

    return not math.isfinite(test_acc) or test_acc <= 1.0 / num_classes + margin


def runs_table(metric_paths: Sequence[str | os.PathLike], chance_margin: float = CHANCE_MARGIN) -> pd.DataFrame:
    """One row per run: sweep coordinates, accuracy and training statistics.

    ``at_chance``: the test accuracy is ≤ 1/num_classes + ``chance_margin`` (the network did not
    learn; its pairs are left out of the findings and marked in the figures); ``chance_acc`` is
    1/num_classes.
    """
    import pandas as pd

    rows = []
    for path in metric_paths:
        m = read_json(path)
        row = {k: v for k, v in m.items() if not isinstance(v, (dict, list))}
        classes = int(m.get("num_classes") or 0)
        if classes and "test_acc" in m:
            row["chance_acc"] = 1.0 / classes
            row["at_chance"] = at_chance(float(m["test_acc"]), classes, chance_margin)
        rows.append(row)
    frame = pd.DataFrame(rows)
    # order_seed: the seed of the minibatch order (data-order control); an ordinary run's
    # (and a metrics file written before the column existed) is its seed
    frame["order_seed"] = frame["order_seed"].fillna(frame["seed"]) if "order_seed" in frame else frame["seed"]
    frame["order_seed"] = frame["order_seed"].astype(int)
    keys = ["dataset", "arch", "width", "frozen_k", "seed", "order_seed"]
    return frame[keys + [c for c in frame.columns if c not in keys]].sort_values(keys, ignore_index=True)


def complete_pair_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """A pair table (columns ``seed_a``, ``seed_b``) with every pair coordinate present:
    ``control`` (``cross`` where absent: only cross-seed pairs are written without it) and
    ``order_seed_a``, ``order_seed_b`` (the seed where absent: an ordinary run's minibatch
    order is its seed), placed right after ``seed_b``. A run table (column ``seed``: rotation)
    gets ``order_seed`` = ``seed`` right after it. Other tables are returned unchanged."""
    if "seed" in frame and "order_seed" not in frame and "seed_a" not in frame:
        frame = frame.copy()
        frame.insert(list(frame.columns).index("seed") + 1, "order_seed", frame["seed"])
        return frame
    if not {"seed_a", "seed_b"} <= set(frame.columns):
        return frame
    frame = frame.copy()
    at = list(frame.columns).index("seed_b") + 1
    if "control" not in frame:
        frame.insert(at, "control", "cross")
        at += 1
    for side in "ab":
        if f"order_seed_{side}" not in frame:
            frame.insert(at, f"order_seed_{side}", frame[f"seed_{side}"])
        at = list(frame.columns).index(f"order_seed_{side}") + 1
    return frame


def concat_tables(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Concatenate tidy CSV tables with identical columns, refusing any that differ. Pair
    tables are first completed by :func:`complete_pair_columns` (order seeds, control)."""
    import pandas as pd

    # read_table: a table whose digest was recorded must still match it
    frames = [complete_pair_columns(read_table(p)) for p in paths]
    if not frames:
        raise ValueError("no tables to concatenate")
    columns = list(frames[0].columns)
    for path, frame in zip(paths, frames):
        if list(frame.columns) != columns:
            raise ValueError(f"{path} has columns {list(frame.columns)}, expected {columns}")
    return pd.concat(frames, ignore_index=True)
