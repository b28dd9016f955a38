"""Kernel measures that need n × n matrices, on the declared subsample.

The moments pass keeps, for a seeded random subsample of s rows, the Gram
matrices of the subsample's rows centred at the subsample mean
(``Moments.sub_kx``, ``sub_ky``; s × s). Everything here needs only those:
pairwise squared distances are ‖x_i - x_j‖² = G_ii + G_jj - 2G_ij (centring does
not change distances). Called with arrays, all rows form the "subsample".

* :func:`rbf_cka` — similarity in [0, 1], biased HSIC (as in Kornblith et al.),
  σ = t × median pairwise distance of each representation separately.
  Invariant to rotation, translation and isotropic scaling (σ scales with the data).
* :func:`linear_cka_subsample` — linear CKA on the subsample only (a check on
  the exact full-data value, and the only CKA available in sample space).
* :func:`mutual_knn` — mean over samples of |N_k^A(i) ∩ N_k^B(i)| / k with
  Euclidean k-nearest neighbours (self excluded), in [0, 1]; invariant to
  rotation, translation, isotropic scaling and to the order of the samples.
  Ties at the k-th distance are not broken by row index (that made two constant
  layers agree perfectly: every neighbour list became "the first k rows"); the
  value is the expectation over uniformly random tie-breaking, and a
  representation that is constant on the subsample makes it unavailable.
"""

from __future__ import annotations

import numpy as np

from convergent.measures._common import MeasureUnavailable
from convergent.moments import Moments


def subsample_grams(X: np.ndarray | Moments, Y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Centred Gram matrices (s, s) of the subsample: from Moments, or of all rows of X, Y."""
    if isinstance(X, Moments):
        if X.sub_kx is None or X.sub_ky is None:
            raise MeasureUnavailable("no subsample in these moments (subsample_size was 0)")
        return X.sub_kx, X.sub_ky
    if Y is None:
        raise TypeError("second array Y is missing")
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but Y has {Y.shape[0]}")
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    return Xc @ Xc.T, Yc @ Yc.T


def sq_distances(G: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances (s, s) from a Gram matrix; clipped at 0, zero diagonal."""
    g = np.diag(G)
    D2 = np.maximum(g[:, None] + g[None, :] - 2.0 * G, 0.0)
    np.fill_diagonal(D2, 0.0)
    return D2


def _centre_kernel(K: np.ndarray) -> np.ndarray:
    return K - K.mean(0)[None, :] - K.mean(1)[:, None] + K.mean()


def cka_from_kernels(K: np.ndarray, L: np.ndarray) -> float:
    """CKA of two n × n kernel matrices of the same samples (centred here), in [0, 1] for PSD kernels."""
    Kc, Lc = _centre_kernel(K), _centre_kernel(L)
    den = np.linalg.norm(Kc) * np.linalg.norm(Lc)
    if not den > 0:
        raise MeasureUnavailable("a centred kernel matrix is zero (constant representation on the subsample)")
    return float(np.sum(Kc * Lc) / den)


def _dist_and_median(G: np.ndarray) -> tuple[np.ndarray, float]:
    D2 = sq_distances(G)
    med = float(np.median(np.sqrt(D2[np.triu_indices(G.shape[0], 1)])))
    if not med > 0:
        raise MeasureUnavailable("median pairwise distance is 0; RBF bandwidth undefined")
    return D2, med


def rbf_kernel_from_gram(G: np.ndarray, sigma_scale: float) -> np.ndarray:
    """exp(-‖x_i-x_j‖² / (2σ²)), σ = ``sigma_scale`` × median pairwise distance (over i < j)."""
    D2, med = _dist_and_median(G)
    return np.exp(-D2 / (2.0 * (sigma_scale * med) ** 2))


def rbf_cka_grid(X: np.ndarray | Moments, Y: np.ndarray | None = None,
                 sigma_scales: tuple[float, ...] = (0.2, 0.4, 0.8)) -> list[float]:
    """:func:`rbf_cka` for several bandwidth scales, sharing the distance computations."""
    Gx, Gy = subsample_grams(X, Y)
    if Gx.shape[0] < 3:
        raise MeasureUnavailable("RBF CKA needs at least 3 subsample rows")
    (Dx, mx), (Dy, my) = _dist_and_median(Gx), _dist_and_median(Gy)
    return [cka_from_kernels(np.exp(-Dx / (2.0 * (t * mx) ** 2)), np.exp(-Dy / (2.0 * (t * my) ** 2)))
            for t in sigma_scales]


def rbf_cka(X: np.ndarray | Moments, Y: np.ndarray | None = None, sigma_scale: float = 0.8) -> float:
    """RBF-kernel CKA on the subsample (see module doc); similarity in [0, 1]."""
    return rbf_cka_grid(X, Y, (sigma_scale,))[0]


def linear_cka_subsample(X: np.ndarray | Moments, Y: np.ndarray | None = None) -> float:
    """Linear CKA ⟨Gx, Gy⟩ / (‖Gx‖ ‖Gy‖) of the centred subsample Grams; in [0, 1]."""
    Gx, Gy = subsample_grams(X, Y)
    return cka_from_kernels(Gx, Gy)


#: distances within this fraction of a row's k-th distance count as tied with it
KNN_TIE_RTOL = 1e-12


def knn_weights(G: np.ndarray, k: int) -> np.ndarray:
    """(s, s) matrix P with P[i, j] = probability that j is among the k nearest neighbours of i
    (self excluded) when ties at the k-th distance are broken uniformly at random.

    Rows sum to k; without ties P is the 0/1 indicator of the k nearest neighbours.
    """
    D2 = sq_distances(G)
    np.fill_diagonal(D2, np.inf)
    kth = np.partition(D2, k - 1, axis=1)[:, k - 1:k]           # (s, 1): each row's k-th distance
    tol = KNN_TIE_RTOL * np.maximum(kth, np.finfo(float).tiny)
    closer = D2 < kth - tol
    tied = np.abs(D2 - kth) <= tol
    free = k - closer.sum(axis=1, keepdims=True)                # slots left for the tied points
    return closer + tied * (free / tied.sum(axis=1, keepdims=True))


def mutual_knn(X: np.ndarray | Moments, Y: np.ndarray | None = None, k: int = 10) -> float:
    """Mean fraction of shared k nearest neighbours between the two representations; in [0, 1].

    With ties, the expected fraction under independent uniform tie-breaking in A and B
    (Σ_j P_A[i, j] P_B[i, j] / k, see :func:`knn_weights`). A representation whose
    subsample rows are all equal has no neighbour structure: :class:`MeasureUnavailable`.
    """
    Gx, Gy = subsample_grams(X, Y)
    s = Gx.shape[0]
    if not 1 <= k < s:
        raise MeasureUnavailable(f"k={k} needs 1 <= k < subsample rows ({s})")
    for side, G in (("A", Gx), ("B", Gy)):
        if not sq_distances(G).max() > 0:
            raise MeasureUnavailable(f"representation {side} is constant on the subsample "
                                     f"(all {s} rows equal); nearest neighbours undefined")
    return float(np.sum(knn_weights(Gx, k) * knn_weights(Gy, k)) / (s * k))
