"""What several jobs share: a table's constant columns, the device, the hint of a diverged training."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:   # pandas is imported where a job needs it: train and extract jobs never do
    import pandas as pd


def _prepend_columns(frame: pd.DataFrame, columns: Mapping[str, Any]) -> None:
    """Insert constant ``columns`` (e.g. a pair's coordinates) at the front of ``frame``, in order."""
    for i, (key, value) in enumerate(columns.items()):
        frame.insert(i, key, value)


def _device(requested: str) -> str:
    """The config's ``device`` resolved by :func:`convergent.nets.train.resolve_device`, as a string."""
    from convergent.nets.train import resolve_device

    return str(resolve_device(requested))


def lr_hint(key: str, lr: float) -> str:
    """What to change when training diverges: the config key of the learning rate in use."""
    where = ("sweep.training.lr, or overrides[].training.lr for one (dataset, arch) cell"
             if key == "training.lr" else key)
    return f"{key} = {lr:g}: lower it (config key {where}), e.g. to {lr / 10:g}"
