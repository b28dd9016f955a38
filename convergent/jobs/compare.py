"""Rules ``moments`` and ``measures`` (rules/compare.smk): a comparison group's moments, then its measures."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convergent.io import write_table
from convergent.jobs._common import _prepend_columns
from convergent.logs import get_logger, lap
from convergent.settings import MeasureSettings, MomentSettings

if TYPE_CHECKING:   # pandas is imported where a job needs it: train and extract jobs never do
    import pandas as pd


def moments_job(*, pairs: Mapping[str, Sequence[str]], layers: Sequence[str],
                params: MomentSettings | Mapping[str, Any], out_dir: str, threads: int = 1) -> None:
    """One streaming pass per (pair, layer) over the pair's two stores: ``out_dir/{key}/{layer}.npz``,
    the sufficient statistics of every measure. ``pairs`` maps a pair key (``{control}/{label}``,
    :attr:`convergent.sweep.Pair.key`) to its stores ``[a, b]``; each store is opened once. The
    directory appears only once every pair and layer is done. ``threads``: the job's cores; with 2
    or more, each fold gets a thread (capped by ``params.threads``, :class:`~convergent.settings.MomentSettings`)."""
    from convergent.activations import ActivationStore
    from convergent.io import atomic_directory
    from convergent.moments import save_moments, streaming_moments

    log = get_logger()
    lap("imports")
    opened: dict[str, ActivationStore] = {}

    def store(path: str) -> ActivationStore:
        if path not in opened:
            opened[path] = ActivationStore(path)
        return opened[path]

    p = MomentSettings.coerce(params)
    kw = {**p.as_dict(), "threads": min(int(threads), int(p.threads))}
    with atomic_directory(out_dir) as tmp:
        for key, (store_a, store_b) in pairs.items():
            a, b = store(store_a), store(store_b)
            lap("model")
            (tmp / key).mkdir(parents=True)
            for layer in layers:
                start = time.perf_counter()
                moments = streaming_moments(a, b, layer, **kw)
                lap("compute")
                save_moments(tmp / key / f"{layer}.npz", moments)
                lap("write")
                log.info("moments of %s %s in %.2f s", key, layer, time.perf_counter() - start)
    lap("write")


def _load_moments_checked(path: Path, moments_dir: str) -> Any:
    """:func:`convergent.moments.load_moments`; a torn or corrupt file (the zip's CRC-32 fails)
    raises :class:`~convergent.io.DamagedOutputError` naming it and the directory to rebuild."""
    import zipfile

    from convergent.io import DamagedOutputError, rebuild_hint
    from convergent.moments import load_moments

    try:
        return load_moments(path)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise DamagedOutputError(f"moments file {path} is damaged ({type(err).__name__}: {err}). "
                                 f"{rebuild_hint(moments_dir)}") from err


def measures_job(*, moments_dir: str, pairs: Mapping[str, Mapping[str, Any]], layers: Sequence[str],
                 params: MeasureSettings | Mapping[str, Any], layer_index: Mapping[str, int],
                 out_csv: str) -> pd.DataFrame:
    """Every enabled measure of every pair and layer from the moments files alone, as tidy rows.

    ``pairs`` maps a pair key (``{control}/{label}``, the pair's folder in ``moments_dir``) to its
    columns (dataset … order_seed_b); each layer's rows also get ``layer`` and ``layer_index``
    (1-based depth in the architecture, from ``layer_index``). ``params``:
    :class:`~convergent.settings.MeasureSettings`.
    """
    import pandas as pd

    from convergent.measures import compute_measures

    log = get_logger()
    lap("imports")
    params = MeasureSettings.coerce(params)
    tables = []
    for key, coordinates in pairs.items():
        for layer in layers:
            start = time.perf_counter()
            moments = _load_moments_checked(Path(moments_dir) / key / f"{layer}.npz", moments_dir)
            lap("data")
            table = compute_measures(moments, params)
            _prepend_columns(table, {**coordinates, "layer": layer, "layer_index": layer_index[layer]})
            tables.append(table)
            lap("compute")
            log.info("measures of %s %s: %d rows in %.2f s", key, layer, len(table), time.perf_counter() - start)
    out = pd.concat(tables, ignore_index=True)
    write_table(out_csv, out)
    lap("write")
    return out
