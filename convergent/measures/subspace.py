"""Neuron activation subspace match (Wang, Hu, Gu, Wu, Hu, He, Hopcroft, NeurIPS 2018).

A neuron's activation vector z_v ∈ Rⁿ (one column of X or Y; *not* centred).
Relative distance of z to span{Z} = ‖z - proj z‖ / ‖z‖. Everything is computed
from the raw Gram matrix G = [X Y]ᵀ[X Y] (``Moments.xx``, ``xy``, ``yy``): with
the unit-diagonal cosine Gram C = D^{-1/2} G D^{-1/2},

    reldist²(v, S) = 1 - C_vS C_SS⁺ C_Sv   (a Schur complement).

C_SS⁺ is applied through a **pivoted Cholesky** of C_SS (LAPACK ``dpstrf``)
that stops when the largest remaining pivot is ≤ ``rank_tol`` (default 1e-10):
a spanning neuron whose relative distance to the span of those already chosen
is below sqrt(rank_tol) = 1e-5 adds nothing, so exactly collinear or duplicate
neurons are handled explicitly rather than by a failing factorisation.
Neurons with ‖z‖ ≤ ``norm_tol`` (1e-16) are unmatched from the start but count in
the denominator of the similarity.

Similarity (|X*| + |Y*|) / (|𝒳| + |𝒴|) is in [0, 1] (1: every neuron matched).
Invariances: permutation of neurons and scaling of individual neurons (the
cosine Gram is unchanged); within a matched group, any invertible linear map
of one net's neurons that keeps them inside the group's span (e.g. Y = X A with
A invertible gives similarity 1). Not invariant to maps that mix neurons across
spans (e.g. a rotation of all of Y that mixes shared and private units), and not
to translation (vectors are not centred).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.linalg import lapack, solve_triangular

from convergent.moments import Moments

DEFAULT_RANK_TOL = 1e-10
DEFAULT_NORM_TOL = 1e-16


@dataclass(frozen=True)
class JointGram:
    """Cosine Gram C (d1+d2, d1+d2) of the non-zero neurons; A's neurons first.

    ``idx`` maps rows of C to neuron ids in 0..d1+d2-1 (B's neuron j is d1 + j).
    """

    C: np.ndarray
    idx: np.ndarray
    d1: int
    d2: int


def joint_gram(X: np.ndarray | Moments, Y: np.ndarray | None = None, norm_tol: float = DEFAULT_NORM_TOL
               ) -> JointGram:
    """Raw (uncentred) joint Gram of all neurons, normalised to unit diagonal, zero-norm neurons dropped."""
    if isinstance(X, Moments):
        m = X
        xx, xy, yy = m.xx, m.xy, m.yy
    else:
        X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
        if X.shape[0] != Y.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but Y has {Y.shape[0]}")
        xx, xy, yy = X.T @ X, X.T @ Y, Y.T @ Y
    d1, d2 = xx.shape[0], yy.shape[0]
    G = np.block([[xx, xy], [xy.T, yy]])
    g = np.diag(G).copy()
    alive = np.flatnonzero(np.sqrt(np.maximum(g, 0.0)) > norm_tol)
    s = 1.0 / np.sqrt(g[alive])
    C = G[np.ix_(alive, alive)] * s[:, None] * s[None, :]
    np.fill_diagonal(C, 1.0)
    return JointGram(C, alive, d1, d2)


def rel_dist_to_span(C: np.ndarray, targets: np.ndarray, span: np.ndarray,
                     rank_tol: float = DEFAULT_RANK_TOL) -> np.ndarray:
    """Relative distances of the unit vectors ``targets`` (indices into C) to span(``span``).

    Returns (len(targets),) values in [0, 1]; 1 for an empty span.
    """
    targets, span = np.asarray(targets, dtype=np.intp), np.asarray(span, dtype=np.intp)
    if span.size == 0:
        return np.ones(targets.size)
    css = np.array(C[np.ix_(span, span)], order="F")
    L, piv, rank, info = lapack.dpstrf(css, lower=1, tol=rank_tol)
    if info < 0:
        raise RuntimeError(f"dpstrf failed with info={info}")
    piv = piv[:rank] - 1                       # LAPACK pivots are 1-based
    Lr = np.tril(L[:rank, :rank])
    W = solve_triangular(Lr, C[np.ix_(span[piv], targets)], lower=True, check_finite=False)
    d2 = 1.0 - np.einsum("ij,ij->j", W, W)
    return np.sqrt(np.clip(d2, 0.0, 1.0))


def _max_match_ids(C: np.ndarray, xs: np.ndarray, ys: np.ndarray, eps: float, rank_tol: float,
                   require: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Iterate Wang et al.'s pruning from (xs, ys) (indices into C) to the maximum ε-match within them.

    Stops early (returning empty sets) if index ``require`` drops out.
    """
    while True:
        nx = xs[rel_dist_to_span(C, xs, ys, rank_tol) <= eps] if xs.size else xs
        ny = ys[rel_dist_to_span(C, ys, nx, rank_tol) <= eps] if ys.size else ys
        if require is not None and require not in nx and require not in ny:
            return nx[:0], ny[:0]
        if nx.size == xs.size and ny.size == ys.size:
            return nx, ny
        xs, ys = nx, ny


@dataclass(frozen=True)
class SubspaceMatch:
    """Maximum ε-match: neuron indices of A (``a``) and B (``b``) and the similarity."""

    a: np.ndarray
    b: np.ndarray
    similarity: float
    eps: float
    d1: int
    d2: int


def max_match(X: np.ndarray | Moments, Y: np.ndarray | None = None, eps: float = 0.25,
              rank_tol: float = DEFAULT_RANK_TOL, norm_tol: float = DEFAULT_NORM_TOL) -> SubspaceMatch:
    """Maximum ε-approximate match and similarity (|X*| + |Y*|) / (d1 + d2)."""
    jg = joint_gram(X, Y, norm_tol)
    return _max_match(jg, eps, rank_tol)


def _max_match(jg: JointGram, eps: float, rank_tol: float) -> SubspaceMatch:
    is_a = jg.idx < jg.d1
    xs, ys = np.flatnonzero(is_a), np.flatnonzero(~is_a)
    mx, my = _max_match_ids(jg.C, xs, ys, eps, rank_tol)
    a, b = jg.idx[mx], jg.idx[my] - jg.d1
    return SubspaceMatch(a, b, (a.size + b.size) / (jg.d1 + jg.d2), eps, jg.d1, jg.d2)


@dataclass(frozen=True)
class MinimalMatches:
    """Minimal matches of the processed neurons: ``sizes[i]`` = |X_v| + |Y_v| for neuron ``neurons[i]``
    (ids: A's neuron j is j, B's is d1 + j); ``n_in_max`` neurons were in the maximum match."""

    neurons: np.ndarray
    sizes: np.ndarray
    matches: list[tuple[np.ndarray, np.ndarray]]
    n_in_max: int


def minimal_matches(X: np.ndarray | Moments, Y: np.ndarray | None = None, eps: float = 0.25,
                    max_neurons: int = 8, rank_tol: float = DEFAULT_RANK_TOL, norm_tol: float = DEFAULT_NORM_TOL,
                    neurons: Sequence[int] | None = None) -> MinimalMatches:
    """Wang et al.'s minimal (simple) match of neurons in the maximum ε-match.

    For a neuron v: start from the maximum match M; for each other neuron u of M
    in increasing id order, tentatively delete u and recompute the maximum match
    of the remainder; keep the deletion if v is still matched. Cost is
    |M| maximum-match computations per v, so at most ``max_neurons`` neurons are
    processed: evenly spaced over M's neurons in id order (A's then B's), unless
    ``neurons`` (ids) is given.
    """
    jg = joint_gram(X, Y, norm_tol)
    mm = _max_match(jg, eps, rank_tol)
    pos = {int(v): k for k, v in enumerate(jg.idx)}
    members = np.array(sorted([pos[int(a)] for a in mm.a] + [pos[int(b) + jg.d1] for b in mm.b]), dtype=np.intp)
    if neurons is None:
        if members.size == 0:
            return MinimalMatches(np.zeros(0, int), np.zeros(0, int), [], 0)
        pick = np.unique(np.linspace(0, members.size - 1, min(max_neurons, members.size)).round().astype(int))
        chosen = members[pick]
    else:
        chosen = np.array([pos[int(v)] for v in neurons], dtype=np.intp)
        if not set(chosen.tolist()) <= set(members.tolist()):
            raise ValueError("every requested neuron must be in the maximum match")
    is_a = jg.idx < jg.d1
    sizes, matches = [], []
    for v in chosen:
        cur = members.copy()
        for u in members:
            if u == v or u not in cur:
                continue
            trial = cur[cur != u]
            xs, ys = trial[is_a[trial]], trial[~is_a[trial]]
            nx, ny = _max_match_ids(jg.C, xs, ys, eps, rank_tol, require=int(v))
            if v in nx or v in ny:
                cur = np.sort(np.concatenate([nx, ny]))
        a = jg.idx[cur[is_a[cur]]]
        b = jg.idx[cur[~is_a[cur]]] - jg.d1
        matches.append((a, b))
        sizes.append(a.size + b.size)
    return MinimalMatches(jg.idx[chosen], np.array(sizes, dtype=int), matches, int(members.size))
