"""Moments files: one ``.npz`` per (pair, layer) holding every view's moments, either form.

Format version 2 (this code) adds the dual form (:class:`~convergent.moments.dual.GramMoments`):
a view's header entry then says ``"form": "dual"``. Version-1 files (primal only) are
read unchanged; a file newer than this code is refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from convergent.io import atomic_file
from convergent.moments.base import DUAL
from convergent.moments.dual import GramMoments
from convergent.moments.primal import _INT_FIELDS, _STAT_FIELDS, Moments

#: version written; :data:`READABLE_VERSIONS` are read (1: primal views only)
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)

#: GramMoments fields that are arrays (stored as such) and the scalars kept in the header
_GRAM_ARRAYS = ("gram_x", "gram_y", "xmu", "ymu", "var_x_", "var_y_", "labels", "rows",
                "sub_kx", "sub_ky", "sub_idx", "sub_labels")


def _gram_to_arrays(m: GramMoments, prefix: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays = {prefix + f: getattr(m, f) for f in _GRAM_ARRAYS if getattr(m, f) is not None}
    scalars = {f.name: getattr(m, f.name) for f in dataclasses.fields(m)
               if f.name not in _GRAM_ARRAYS and f.name != "meta"}
    return arrays, {"meta": m.meta, "form": DUAL, "scalars": scalars}


def _arrays_to_gram(z: Any, prefix: str, info: dict[str, Any]) -> GramMoments:
    kw = {f: z[prefix + f] for f in _GRAM_ARRAYS if prefix + f in z.files}
    return GramMoments(**kw, **info["scalars"], meta=dict(info["meta"]))


def _moments_to_arrays(m: Moments, prefix: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays: dict[str, np.ndarray] = {}
    parts = [(f"{prefix}fold{i}/", f) for i, f in enumerate(m.folds or (m,))]
    parts += [(f"{prefix}block{j}/", b) for j, b in enumerate(m.blocks or ())]
    for name, arr in (m.null or {}).items():
        arrays[f"{prefix}null/{name}"] = np.asarray(arr, dtype=np.float64)
    for p, f in parts:
        arrays[p + "shift_x"], arrays[p + "shift_y"] = f.shift_x, f.shift_y
        for name in _STAT_FIELDS:
            val = getattr(f, name)
            if val is not None:
                arrays[p + name] = np.asarray(val, dtype=np.float64)
        for name in _INT_FIELDS:
            arrays[p + name] = np.asarray(getattr(f, name), dtype=np.int64)
    for name in ("sub_kx", "sub_ky", "sub_idx", "sub_labels"):
        val = getattr(m, name)
        if val is not None:
            arrays[prefix + name] = val
    return arrays, {"meta": m.meta, "n_folds": len(m.folds or (m,)), "n_blocks": len(m.blocks or ()),
                    "block_folds": [int(b.meta["fold"]) for b in m.blocks or ()]}


def _fields_at(z: Any, p: str) -> dict[str, Any]:
    kw: dict[str, Any] = {"shift_x": z[p + "shift_x"], "shift_y": z[p + "shift_y"]}
    for name in _STAT_FIELDS:
        key = p + name
        if key in z.files:
            arr = z[key]
            kw[name] = float(arr) if arr.ndim == 0 else arr
    for name in _INT_FIELDS:
        kw[name] = int(z[p + name])
    return kw


def _arrays_to_moments(z: Any, prefix: str, info: dict[str, Any]) -> Moments:
    folds = [Moments(**_fields_at(z, f"{prefix}fold{i}/"), meta={**info["meta"], "fold": i})
             for i in range(info["n_folds"])]
    if len(folds) == 1:
        total = folds[0]
        total.meta = dict(info["meta"])
    else:
        total = folds[0] + folds[1]
        total.folds = (folds[0], folds[1])
        total.meta = dict(info["meta"])
    for name in ("sub_kx", "sub_ky", "sub_idx", "sub_labels"):
        if prefix + name in z.files:
            setattr(total, name, z[prefix + name])
    if info.get("n_blocks"):
        total.blocks = tuple(Moments(**_fields_at(z, f"{prefix}block{j}/"),
                                     meta={**info["meta"], "fold": fold, "block": j})
                             for j, fold in enumerate(info["block_folds"]))
    null = {f[len(prefix) + 5:]: z[f] for f in z.files if f.startswith(f"{prefix}null/")}
    total.null = null or None
    return total


def save_moments(path: str | os.PathLike, obj: Moments | GramMoments | dict[str, Moments | GramMoments]) -> Path:
    """Write moments (one Moments, or ``{view: Moments}``) to an ``.npz``, atomically.

    Objects shared between views (dense layers) are stored once. The header
    (JSON, key ``__header__``) records the format version, views, aliases and
    each view's meta (layer, view, dtypes, counts, subsample seed, fold split).
    """
    path = Path(path)
    views = obj if isinstance(obj, dict) else {obj.meta.get("view", "") or "default": obj}
    arrays: dict[str, np.ndarray] = {}
    header: dict[str, Any] = {"format_version": FORMAT_VERSION, "views": {}, "aliases": {},
                              "single": not isinstance(obj, dict)}
    stored: dict[int, str] = {}
    for v, m in views.items():
        if id(m) in stored:
            header["aliases"][v] = stored[id(m)]
            continue
        stored[id(m)] = v
        a, info = (_gram_to_arrays if isinstance(m, GramMoments) else _moments_to_arrays)(m, f"{v}/")
        arrays.update(a)
        header["views"][v] = info
    arrays["__header__"] = np.frombuffer(json.dumps(header, default=_json_default).encode(), dtype=np.uint8)
    with atomic_file(path, f"moments file {path}") as fh:   # a full disk names the file
        np.savez(fh, **arrays)
    return path


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def load_moments(path: str | os.PathLike) -> dict[str, Moments | GramMoments] | Moments | GramMoments:
    """Read what :func:`save_moments` wrote: ``{view: Moments}`` (or the single Moments)."""
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(bytes(z["__header__"]).decode())
        if header.get("format_version") not in READABLE_VERSIONS:
            raise ValueError(f"{path}: moments format {header.get('format_version')} is not one this code reads "
                             f"({', '.join(map(str, READABLE_VERSIONS))}); rerun the moments stage")
        out = {v: (_arrays_to_gram if info.get("form") == DUAL else _arrays_to_moments)(z, f"{v}/", info)
               for v, info in header["views"].items()}
    for alias, target in header["aliases"].items():
        out[alias] = out[target]
    if header.get("single"):
        return next(iter(out.values()))
    return out