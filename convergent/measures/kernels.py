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

The dual form (:class:`~convergent.moments.GramMoments`) holds the Grams of *all*
rows (or of its declared row subsample): :func:`rbf_cka_gram_grid` and
:func:`mutual_knn_gram` compute the same two measures on them, in row blocks, so
that no n × n temporary is made beyond one array of the n(n−1)/2 distances the
median bandwidth needs (the measures ``cka_rbf`` and ``mutual_knn``).
"""

from __future__ import annotations

import numpy as np

from convergent.measures._common import MeasureUnavailable, is_moments
from convergent.moments import GramMoments, Moments

#: entries of one row block of an n × n matrix in the all-rows kernel measures (64 MiB of float64)
_BLOCK_ENTRIES = 8 * 2**20


def subsample_grams(X: np.ndarray | Moments | GramMoments, Y: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Centred Gram matrices (s, s) of the subsample: from moments (either form), or of all rows of X, Y."""
    if is_moments(X):
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


# ----------------------------------------------------------------------------- all rows (dual form)

def _block_rows(n: int) -> int:
    return max(1, _BLOCK_ENTRIES // max(n, 1))


def _sq_distance_rows(G: np.ndarray, g: np.ndarray, r0: int, r1: int) -> np.ndarray:
    """Rows [r0, r1) of the squared-distance matrix of Gram ``G`` (diag ``g``): clipped at 0, zero self-distance."""
    D = G[r0:r1] * -2.0
    D += g[r0:r1, None]
    D += g[None, :]
    np.maximum(D, 0.0, out=D)
    D[np.arange(r1 - r0), np.arange(r0, r1)] = 0.0
    return D


def median_distance_gram(G: np.ndarray) -> float:
    """Median Euclidean distance over pairs i < j (as ``np.median`` defines it) from a Gram (n, n).

    The n(n−1)/2 squared distances are gathered into one array and only its middle
    order statistics are found (``np.partition``); sqrt is monotone, so the median of
    the distances is the (mean of the) square root(s) of the middle squared distance(s).
    """
    n = G.shape[0]
    g = np.diag(G).copy()
    N = n * (n - 1) // 2
    if N == 0:
        raise MeasureUnavailable("median pairwise distance needs at least 2 rows")
    buf = np.empty(N)
    pos, step = 0, _block_rows(n)
    for r0 in range(0, n, step):
        r1 = min(r0 + step, n)
        D = _sq_distance_rows(G, g, r0, r1)
        for i in range(r0, r1):
            buf[pos:pos + n - 1 - i] = D[i - r0, i + 1:]
            pos += n - 1 - i
    mid = N // 2
    if N % 2:
        buf.partition(mid)
        return float(np.sqrt(buf[mid]))
    buf.partition([mid - 1, mid])
    return float((np.sqrt(buf[mid - 1]) + np.sqrt(buf[mid])) / 2)


def _rbf_rows(G: np.ndarray, g: np.ndarray, r0: int, r1: int, gamma: float) -> np.ndarray:
    D = _sq_distance_rows(G, g, r0, r1)
    D *= -gamma
    return np.exp(D, out=D)


def rbf_cka_gram_grid(Gx: np.ndarray, Gy: np.ndarray, sigma_scales: tuple[float, ...] = (0.2, 0.4, 0.8)
                      ) -> list[float]:
    """RBF CKA (biased HSIC, σ = t × median pairwise distance per representation) of all rows
    of two Grams (n, n); similarity in [0, 1]. Same value as :func:`rbf_cka_grid` on the
    same rows, computed in row blocks: one pass for the kernels' row means, one for the
    centred products (HKH is formed block by block, never whole)."""
    n = Gx.shape[0]
    if n < 3:
        raise MeasureUnavailable("RBF CKA needs at least 3 rows")
    med = []
    for G in (Gx, Gy):
        m = median_distance_gram(G)
        if not m > 0:
            raise MeasureUnavailable("median pairwise distance is 0; RBF bandwidth undefined")
        med.append(m)
    gx, gy = np.diag(Gx).copy(), np.diag(Gy).copy()
    step, out = _block_rows(n), []
    for t in sigma_scales:
        gam = [1.0 / (2.0 * (t * m) ** 2) for m in med]
        rx, ry = np.empty(n), np.empty(n)                 # row means of the two kernels
        for r0 in range(0, n, step):
            r1 = min(r0 + step, n)
            rx[r0:r1] = _rbf_rows(Gx, gx, r0, r1, gam[0]).mean(axis=1)
            ry[r0:r1] = _rbf_rows(Gy, gy, r0, r1, gam[1]).mean(axis=1)
        ax, ay = rx.mean(), ry.mean()
        kl = kk = ll = 0.0
        for r0 in range(0, n, step):
            r1 = min(r0 + step, n)
            K = _rbf_rows(Gx, gx, r0, r1, gam[0])
            K -= rx[r0:r1, None]
            K -= rx[None, :]
            K += ax
            L = _rbf_rows(Gy, gy, r0, r1, gam[1])
            L -= ry[r0:r1, None]
            L -= ry[None, :]
            L += ay
            kl += float(np.vdot(K, L))
            kk += float(np.vdot(K, K))
            ll += float(np.vdot(L, L))
        if not (kk > 0 and ll > 0):
            raise MeasureUnavailable("a centred kernel matrix is zero (constant representation)")
        out.append(kl / np.sqrt(kk * ll))
    return out


def _knn_weight_rows(G: np.ndarray, g: np.ndarray, r0: int, r1: int, k: int) -> np.ndarray:
    """Rows [r0, r1) of :func:`knn_weights` of Gram ``G`` (diag ``g``): P[i, j] = probability that j
    is among the k nearest neighbours of i (self excluded) under uniform random tie-breaking."""
    D = _sq_distance_rows(G, g, r0, r1)
    D[np.arange(r1 - r0), np.arange(r0, r1)] = np.inf
    kth = np.partition(D, k - 1, axis=1)[:, k - 1:k]      # the k-th smallest distance of each row
    tol = KNN_TIE_RTOL * np.maximum(kth, np.finfo(float).tiny)
    closer = D < kth - tol
    tied = np.abs(D - kth) <= tol
    free = k - closer.sum(axis=1, keepdims=True)
    return closer + tied * (free / tied.sum(axis=1, keepdims=True))


def mutual_knn_gram(Gx: np.ndarray, Gy: np.ndarray, k: int = 10) -> float:
    """Mutual k-NN (mean fraction of shared k nearest neighbours, expected over random tie-breaking)
    of all rows of two Grams (n, n); in [0, 1]. A constant representation makes it unavailable."""
    n = Gx.shape[0]
    if not 1 <= k < n:
        raise MeasureUnavailable(f"k={k} needs 1 <= k < rows ({n})")
    gx, gy = np.diag(Gx).copy(), np.diag(Gy).copy()
    for side, g in (("A", gx), ("B", gy)):
        if not g.max() > 0:   # centred rows all zero: every row equal
            raise MeasureUnavailable(f"representation {side} is constant over the {n} rows; "
                                     "nearest neighbours undefined")
    hits, step = 0.0, _block_rows(n)
    for r0 in range(0, n, step):
        r1 = min(r0 + step, n)
        hits += float(np.sum(_knn_weight_rows(Gx, gx, r0, r1, k) * _knn_weight_rows(Gy, gy, r0, r1, k)))
    return hits / (n * k)


def rbf_cka_all_rows(m: GramMoments, sigma_scales: tuple[float, ...] = (0.2, 0.4, 0.8)) -> list[float]:
    """:func:`rbf_cka_gram_grid` of the dual form's Grams (every row, or its declared row subsample)."""
    return rbf_cka_gram_grid(m.gram("a"), m.gram("b"), sigma_scales)


def mutual_knn_all_rows(m: GramMoments, k: int = 10) -> float:
    """:func:`mutual_knn_gram` of the dual form's Grams."""
    return mutual_knn_gram(m.gram("a"), m.gram("b"), k)
