"""Many-to-many groups: spectral clustering of both nets' units together (Li et al. 2016).

Affinity = |Pearson correlation| over the joint 2d × 2d matrix of all alive
units of A and B (within-net and cross-net blocks), clustered with
``sklearn.cluster.SpectralClustering(affinity="precomputed",
assign_labels="cluster_qr")`` (deterministic label assignment).

**Mixing score** (similarity in [0, 1]): (2/N) Σ_c min(a_c, b_c), where a_c, b_c
are the numbers of A's and B's units in cluster c and N = a + b alive units:
the fraction of units that can be paired with a unit of the other net inside
their cluster. 1 = every cluster is balanced between the nets (e.g. a self-pair);
0 = every cluster holds units of one net only. Also reported: the fraction of
clusters that contain units of both nets. Invariant to permutation and per-unit
affine maps; not to rotations.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import SpectralClustering

from convergent.measures._common import DEFAULT_DEAD_TOL, MeasureUnavailable, as_moments, dead_units
from convergent.moments import Moments


@dataclass(frozen=True)
class SpectralGroups:
    """Cluster labels of A's alive units (``units_a``) and B's; scores as in the module doc."""

    labels_a: np.ndarray
    labels_b: np.ndarray
    units_a: np.ndarray
    units_b: np.ndarray
    mixing: float
    mixed_clusters: float
    k: int


def joint_correlation(m: Moments, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """Correlation matrix of the alive units [A's ia, B's ib], ((|ia|+|ib|), (|ia|+|ib|))."""
    C = np.block([[m.cxx[np.ix_(ia, ia)], m.cxy[np.ix_(ia, ib)]],
                  [m.cxy[np.ix_(ia, ib)].T, m.cyy[np.ix_(ib, ib)]]])
    s = 1.0 / np.sqrt(np.diag(C))
    R = np.clip(C * s[:, None] * s[None, :], -1.0, 1.0)
    np.fill_diagonal(R, 1.0)
    return R


def mixing_score(labels_a: np.ndarray, labels_b: np.ndarray) -> tuple[float, float]:
    """(mixing, fraction of clusters holding both nets) of two label vectors."""
    ks = np.union1d(labels_a, labels_b)
    a = np.array([(labels_a == c).sum() for c in ks])
    b = np.array([(labels_b == c).sum() for c in ks])
    n = a.sum() + b.sum()
    return float(2.0 * np.minimum(a, b).sum() / n), float(np.mean((a > 0) & (b > 0)))


def spectral_groups(X: np.ndarray | Moments, Y: np.ndarray | None = None, k: int = 8, seed: int = 0,
                    dead_tol: float = DEFAULT_DEAD_TOL, dead_atol: float = 0.0) -> SpectralGroups:
    """Cluster the alive units of both nets into ``k`` groups; mixing score of the groups."""
    m = as_moments(X, Y)
    dead = dead_units(m, dead_tol, dead_atol)
    ia, ib = np.flatnonzero(~dead.a), np.flatnonzero(~dead.b)
    n = ia.size + ib.size
    if ia.size == 0 or ib.size == 0:
        raise MeasureUnavailable("a net has no alive units")
    if not 2 <= k < n:
        raise MeasureUnavailable(f"k={k} clusters needs 2 <= k < alive units ({n})")
    A = np.abs(joint_correlation(m, ia, ib))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Graph is not fully connected")
        lab = SpectralClustering(n_clusters=k, affinity="precomputed", assign_labels="cluster_qr",
                                 random_state=seed).fit_predict(A)
    la, lb = lab[:ia.size], lab[ia.size:]
    mix, mixed = mixing_score(la, lb)
    return SpectralGroups(la, lb, ia, ib, mix, mixed, k)
