"""Shared helpers: accept arrays or :class:`~convergent.moments.Moments`, dead units.

Every measure accepts either in-memory arrays ``X`` (n, d1), ``Y`` (n, d2) —
rows are samples — or a ``Moments`` object in place of ``X`` (``Y`` omitted).
Arrays are turned into Moments with the default fold split (n // 2), so both
routes give identical results.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convergent.moments import Moments

DEFAULT_DEAD_TOL = 1e-8


class MeasureUnavailable(ValueError):
    """A measure cannot be computed from these inputs (e.g. all units dead, n < d).

    :func:`convergent.measures.compute_measures` turns it into a row with a NaN
    value and the reason in the ``note`` column; called directly it is raised.
    """


def as_moments(X: np.ndarray | Moments, Y: np.ndarray | None = None, labels: np.ndarray | None = None,
               **kw) -> Moments:
    """``X`` if it already is Moments, else the Moments of arrays X, Y (rows = samples)."""
    if isinstance(X, Moments):
        if Y is not None:
            raise TypeError("pass either a Moments object or two arrays, not both")
        return X
    if Y is None:
        raise TypeError("second array Y is missing")
    return Moments.from_arrays(X, Y, labels, **kw)


@dataclass(frozen=True)
class DeadUnits:
    """Boolean masks (True = dead) over the units of A (d1,) and B (d2,)."""

    a: np.ndarray
    b: np.ndarray

    @property
    def n_a(self) -> int:
        return int(self.a.sum())

    @property
    def n_b(self) -> int:
        return int(self.b.sum())


def dead_mask(var: np.ndarray, tol: float = DEFAULT_DEAD_TOL, atol: float = 0.0) -> np.ndarray:
    """Units whose variance is ≤ ``tol`` × the largest variance in the layer, or ≤ ``atol``.

    Relative by default so the rule does not depend on the activation scale; a
    layer whose every variance is 0 is entirely dead. Returns a bool mask.
    """
    var = np.asarray(var, dtype=np.float64)
    top = float(var.max()) if var.size else 0.0
    return (var <= tol * top) | (var <= atol) | ~np.isfinite(var)


def dead_units(m: Moments, tol: float = DEFAULT_DEAD_TOL, atol: float = 0.0,
               folds: bool = False) -> DeadUnits:
    """Dead units of both nets; with ``folds=True`` a unit dead in either fold counts as dead
    (cross-validated measures need a non-zero variance in each fold)."""
    a, b = dead_mask(m.var_x, tol, atol), dead_mask(m.var_y, tol, atol)
    if folds and m.folds is not None:
        for f in m.folds:
            a |= dead_mask(f.var_x, tol, atol)
            b |= dead_mask(f.var_y, tol, atol)
    return DeadUnits(a, b)
