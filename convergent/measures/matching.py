"""Unit matching by Pearson correlation (Li et al. 2016; Brown et al. 2023).

Similarities: correlations in [-1, 1]; matched means in [-1, 1] (1 = same basis
up to permutation and per-unit affine maps). Invariant to permutation of units
and to per-unit positive scaling and translation; *not* invariant to rotations.
Dead units (variance below tolerance, see :func:`~convergent.measures._common.dead_mask`)
are excluded explicitly: they take no part in any matching, and are counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from convergent.measures._common import DEFAULT_DEAD_TOL, DeadUnits, MeasureUnavailable, as_moments, dead_units
from convergent.moments import Moments


@dataclass(frozen=True)
class Correlation:
    """Correlation between the *alive* units: ``r[i, j]`` = corr(A unit ``idx_a[i]``, B unit ``idx_b[j]``)."""

    r: np.ndarray          # (k1, k2)
    idx_a: np.ndarray      # (k1,) original unit indices of A
    idx_b: np.ndarray      # (k2,)
    dead: DeadUnits


def _corr_from(m: Moments, alive_a: np.ndarray, alive_b: np.ndarray) -> np.ndarray:
    sa = np.sqrt(np.diag(m.cxx)[alive_a])
    sb = np.sqrt(np.diag(m.cyy)[alive_b])
    r = m.cxy[np.ix_(alive_a, alive_b)] / np.outer(sa, sb)
    return np.clip(r, -1.0, 1.0)   # rounding can push |r| a hair above 1


def correlation_matrix(X: np.ndarray | Moments, Y: np.ndarray | None = None,
                       dead_tol: float = DEFAULT_DEAD_TOL, dead_atol: float = 0.0) -> Correlation:
    """Pearson correlations between alive units of X (n, d1) and Y (n, d2)."""
    m = as_moments(X, Y)
    dead = dead_units(m, dead_tol, dead_atol)
    ia, ib = np.flatnonzero(~dead.a), np.flatnonzero(~dead.b)
    if ia.size == 0 or ib.size == 0:
        raise MeasureUnavailable(f"no alive units (dead: A {dead.n_a}/{dead.a.size}, B {dead.n_b}/{dead.b.size})")
    return Correlation(_corr_from(m, ia, ib), ia, ib, dead)


@dataclass(frozen=True)
class Match:
    """A matching of A's alive units to B's: A unit ``a[k]`` ↔ B unit ``b[k]`` with correlation ``r[k]``."""

    a: np.ndarray
    b: np.ndarray
    r: np.ndarray
    dead: DeadUnits

    @property
    def mean(self) -> float:
        return float(self.r.mean())


def _hungarian(c: Correlation) -> Match:
    rows, cols = linear_sum_assignment(c.r, maximize=True)
    return Match(c.idx_a[rows], c.idx_b[cols], c.r[rows, cols], c.dead)


def _semi(c: Correlation) -> Match:
    cols = np.argmax(c.r, axis=1)
    rows = np.arange(c.r.shape[0])
    return Match(c.idx_a, c.idx_b[cols], c.r[rows, cols], c.dead)


def hungarian_match(X: np.ndarray | Moments, Y: np.ndarray | None = None,
                    dead_tol: float = DEFAULT_DEAD_TOL, dead_atol: float = 0.0) -> Match:
    """One-to-one matching maximising total correlation (``linear_sum_assignment``).

    min(alive A, alive B) pairs; units of the wider side that are left over are unmatched.
    """
    return _hungarian(correlation_matrix(X, Y, dead_tol, dead_atol))


def semi_match(X: np.ndarray | Moments, Y: np.ndarray | None = None,
               dead_tol: float = DEFAULT_DEAD_TOL, dead_atol: float = 0.0) -> Match:
    """Each alive unit of A takes its most correlated alive unit of B (reuse allowed)."""
    return _semi(correlation_matrix(X, Y, dead_tol, dead_atol))


def semi_equals_hungarian(h: Match, s: Match) -> float:
    """Fraction of A's one-to-one matched units whose semi-match partner is the same B unit."""
    partner = dict(zip(s.a.tolist(), s.b.tolist()))
    return float(np.mean([partner[a] == b for a, b in zip(h.a.tolist(), h.b.tolist())]))


def cross_validated_match(X: np.ndarray | Moments, Y: np.ndarray | None = None, kind: str = "hungarian",
                          dead_tol: float = DEFAULT_DEAD_TOL, dead_atol: float = 0.0) -> Match:
    """Match on fold 0, report the correlations of those pairs on fold 1.

    Units dead in either fold (or overall) are excluded. ``kind``: ``hungarian`` or ``semi``.
    """
    m = as_moments(X, Y)
    dead = dead_units(m, dead_tol, dead_atol, folds=True)
    ia, ib = np.flatnonzero(~dead.a), np.flatnonzero(~dead.b)
    if ia.size == 0 or ib.size == 0:
        raise MeasureUnavailable("no units alive in both folds")
    f0, f1 = m.fold(0), m.fold(1)
    fit = Correlation(_corr_from(f0, ia, ib), ia, ib, dead)
    match = _hungarian(fit) if kind == "hungarian" else _semi(fit)
    r1 = _corr_from(f1, ia, ib)
    pos_a = {u: k for k, u in enumerate(ia.tolist())}
    pos_b = {u: k for k, u in enumerate(ib.tolist())}
    r = np.array([r1[pos_a[a], pos_b[b]] for a, b in zip(match.a.tolist(), match.b.tolist())])
    return Match(match.a, match.b, r, dead)


def sorted_curve(r: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Matched correlations sorted in decreasing order, read at rank fractions ``grid`` ∈ [0, 1]
    (0 = best matched unit, 1 = worst)."""
    s = np.sort(np.asarray(r))[::-1]
    idx = np.clip(np.round(np.asarray(grid) * (s.size - 1)).astype(int), 0, s.size - 1)
    return s[idx]
