"""Representation-similarity measures, all computable from a moments file.

:func:`compute_measures` runs every enabled measure family on the per-view
:class:`~convergent.moments.Moments` of one (pair, layer) and returns a tidy
table. Each measure is also a pure function usable on arrays (rows = samples)
or on Moments, with identical results.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from convergent.measures._common import MeasureUnavailable, dead_units
from convergent.measures.cka import linear_cka, minibatch_cka
from convergent.measures.matching import (correlation_matrix, cross_validated_match, hungarian_match,
                                          semi_equals_hungarian, semi_match, sorted_curve)
from convergent.moments import Moments

__all__ = ["COLUMNS", "DEFAULT_PARAMS", "MeasureUnavailable", "compute_measures", "correlation_matrix",
           "cross_validated_match", "dead_units", "hungarian_match", "linear_cka", "minibatch_cka",
           "semi_match"]

#: Output columns of :func:`compute_measures`, in order.
COLUMNS = ["measure", "view", "parameter", "parameter_value", "value", "note"]

#: Parameters of :func:`compute_measures` (the pipeline's ``config["measures"]`` overrides keys).
DEFAULT_PARAMS: dict[str, Any] = {
    "enabled": ["cka", "matching"],
    # which view each family uses for conv layers (dense layers look the same in every view)
    "views": {"cka": "flatten", "matching": "positions"},
    "dead_tol": 1e-8,            # dead if variance <= dead_tol * max variance in the layer ...
    "dead_atol": 0.0,            # ... or <= dead_atol
    "sorted_grid": [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0],   # rank fractions of matched_corr_sorted
}


def _params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    p = copy.deepcopy(DEFAULT_PARAMS)
    for k, v in (params or {}).items():
        if k == "views":
            p["views"].update(v or {})
        elif k not in p:
            raise ValueError(f"unknown measures parameter {k!r}; known: {', '.join(sorted(p))}")
        else:
            p[k] = v
    unknown = set(p["enabled"]) - set(_FAMILIES)
    if unknown:
        raise ValueError(f"unknown measure families {sorted(unknown)}; known: {', '.join(_FAMILIES)}")
    return p


def _row(measure: str, value: float, parameter: str = "", parameter_value: float = np.nan, note: str = ""
         ) -> dict[str, Any]:
    return {"measure": measure, "parameter": parameter, "parameter_value": float(parameter_value),
            "value": float(value), "note": note}


def _try(rows: list[dict], measure: str, fn: Callable[[], float], parameter: str = "",
         parameter_value: float = np.nan) -> None:
    """Append the value of ``fn()`` or, if it is unavailable, a NaN row with the reason."""
    try:
        rows.append(_row(measure, fn(), parameter, parameter_value))
    except MeasureUnavailable as err:
        rows.append(_row(measure, np.nan, parameter, parameter_value, note=f"unavailable: {err}"))


def _cka(m: Moments, p: dict[str, Any]) -> list[dict]:
    rows: list[dict] = []
    _try(rows, "cka_linear", lambda: linear_cka(m))
    _try(rows, "cka_linear_debiased", lambda: linear_cka(m, debiased=True))
    if m.mb_count or m.meta.get("minibatch_size"):
        _try(rows, "cka_minibatch", lambda: minibatch_cka(m), "minibatch_size",
             m.meta.get("minibatch_size", np.nan))
    return rows


def _matching(m: Moments, p: dict[str, Any]) -> list[dict]:
    rows: list[dict] = []
    tol, atol = p["dead_tol"], p["dead_atol"]
    try:
        c = correlation_matrix(m, dead_tol=tol, dead_atol=atol)
    except MeasureUnavailable as err:
        for name in ("hungarian_mean_corr", "semi_mean_corr", "semi_equals_hungarian"):
            rows.append(_row(name, np.nan, note=f"unavailable: {err}"))
        return rows
    from convergent.measures.matching import _hungarian, _semi
    h, s = _hungarian(c), _semi(c)
    rows.append(_row("hungarian_mean_corr", h.mean))
    rows.append(_row("semi_mean_corr", s.mean))
    rows.append(_row("semi_equals_hungarian", semi_equals_hungarian(h, s)))
    for g, v in zip(p["sorted_grid"], sorted_curve(h.r, np.asarray(p["sorted_grid"], dtype=float))):
        rows.append(_row("matched_corr_sorted", v, "rank_fraction", g))
    if m.folds is not None:
        _try(rows, "hungarian_mean_corr_cv", lambda: cross_validated_match(m, kind="hungarian",
                                                                           dead_tol=tol, dead_atol=atol).mean)
        _try(rows, "semi_mean_corr_cv", lambda: cross_validated_match(m, kind="semi",
                                                                      dead_tol=tol, dead_atol=atol).mean)
    return rows


_FAMILIES: dict[str, Callable[[Moments, dict[str, Any]], list[dict]]] = {
    "cka": _cka,
    "matching": _matching,
}


def compute_measures(m: Moments | Mapping[str, Moments], params: Mapping[str, Any] | None = None
                     ) -> pd.DataFrame:
    """All enabled measures of one (pair, layer) as a tidy table with :data:`COLUMNS`.

    ``m``: ``{view: Moments}`` as :func:`convergent.moments.load_moments` returns,
    or a single Moments (used for every family). One row per measure × parameter
    value; ``parameter`` is "" and ``parameter_value`` NaN when there is none.
    A measure that cannot be computed gives ``value`` NaN and the reason in
    ``note`` (never a silent NaN); ``note`` is "" otherwise. Dead-unit counts
    (``dead_units_a``, ``dead_units_b``) are reported for every view used.
    """
    p = _params(params)
    rows: list[dict] = []
    dead_done: set[str] = set()
    for fam in p["enabled"]:
        if isinstance(m, Moments):
            view, mv = m.view, m   # a bare Moments knows its own view (or "")
        else:
            view = p["views"].get(fam)
            if view is None:
                raise ValueError(f"no view configured for measure family {fam!r} (params['views'])")
            mv = m.get(view)
            if mv is None:
                rows.append({**_row(fam, np.nan, note=f"unavailable: view {view!r} not in the moments "
                                                       f"(has {', '.join(m)})"), "view": view})
                continue
        if view not in dead_done:
            dead_done.add(view)
            d = dead_units(mv, p["dead_tol"], p["dead_atol"])
            rows += [{**_row("dead_units_a", d.n_a), "view": view}, {**_row("dead_units_b", d.n_b), "view": view}]
        rows += [{**r, "view": view} for r in _FAMILIES[fam](mv, p)]
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["note"] = df["note"].fillna("")
    bad = df["value"].isna() & (df["note"] == "")
    if bad.any():  # a NaN without a reason is a bug, not a result
        raise RuntimeError(f"measures returned NaN without a reason: {df.loc[bad, 'measure'].tolist()}")
    return df
