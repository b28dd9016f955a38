"""Shared helpers: accept arrays or :class:`~convergent.moments.Moments`, dead units.

Every measure accepts either in-memory arrays ``X`` (n, d1), ``Y`` (n, d2) —
rows are samples — or a ``Moments`` object in place of ``X`` (``Y`` omitted).
Arrays are turned into Moments with the default fold split (n // 2), so both
routes give identical results. A measure asks the moments for what it needs (d × d
sums, or the dual form's n × n Grams); the other form raises :class:`FormUnavailable`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convergent.moments import FormUnavailable, GramMoments, MeasureUnavailable, Moments, moments_from_arrays

__all__ = ["DEFAULT_DEAD_TOL", "DeadUnits", "FormUnavailable", "MeasureUnavailable", "as_moments", "dead_mask",
           "dead_units", "is_moments"]

DEFAULT_DEAD_TOL = 1e-8


def is_moments(obj: object) -> bool:
    """True for moments of either form (primal :class:`Moments`, dual :class:`GramMoments`)."""
    return isinstance(obj, (Moments, GramMoments))


def as_moments(X: np.ndarray | Moments | GramMoments, Y: np.ndarray | None = None,
               labels: np.ndarray | None = None, **kw) -> Moments | GramMoments:
    """``X`` if it already is moments (either form), else the moments of arrays X, Y (rows =
    samples) in the form :meth:`Moments.from_arrays` picks (dual when wider than max_features)."""
    if is_moments(X):
        if Y is not None:
            raise TypeError("pass either a Moments object or two arrays, not both")
        return X
    if Y is None:
        raise TypeError("second array Y is missing")
    return moments_from_arrays(X, Y, labels, **kw)


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
