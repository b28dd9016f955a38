"""Independent, deliberately naive reference implementations (n × n, loops, lstsq).

Nothing here imports convergent; each function is the textbook formula.
"""

from __future__ import annotations

import itertools

import numpy as np


def centre(X):
    return X - X.mean(axis=0)


def hsic_biased(K, L):
    n = K.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    return np.trace(K @ H @ L @ H) / (n - 1) ** 2


def cka_linear(X, Y):
    K, L = X @ X.T, Y @ Y.T
    return hsic_biased(K, L) / np.sqrt(hsic_biased(K, K) * hsic_biased(L, L))


def hsic_song(K, L):
    """Song et al. (2012) unbiased HSIC, literally as in docs/measures.md (`cka_linear_debiased`)."""
    n = K.shape[0]
    Kt, Lt = K.copy(), L.copy()
    np.fill_diagonal(Kt, 0)
    np.fill_diagonal(Lt, 0)
    one = np.ones(n)
    return (np.trace(Kt @ Lt) + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * (one @ Kt @ Lt @ one)) / (n * (n - 3))


def cka_debiased(X, Y):
    K, L = X @ X.T, Y @ Y.T
    return hsic_song(K, L) / np.sqrt(hsic_song(K, K) * hsic_song(L, L))


def cka_minibatch(X, Y, b):
    """Nguyen et al.: average unbiased HSIC over consecutive minibatches of b rows."""
    hs = []
    for s in range(0, X.shape[0] - b + 1, b):
        K, L = X[s:s + b] @ X[s:s + b].T, Y[s:s + b] @ Y[s:s + b].T
        hs.append((hsic_song(K, L), hsic_song(K, K), hsic_song(L, L)))
    h = np.mean(hs, axis=0)
    return h[0] / np.sqrt(h[1] * h[2])


def corr(X, Y):
    d1 = X.shape[1]
    return np.corrcoef(X.T, Y.T)[:d1, d1:]


def best_assignment_bruteforce(R):
    """Max-sum one-to-one assignment of rows to columns of a small square matrix by enumeration."""
    d = R.shape[0]
    best, arg = -np.inf, None
    for perm in itertools.permutations(range(d)):
        s = R[np.arange(d), perm].sum()
        if s > best:
            best, arg = s, np.array(perm)
    return arg


def rbf_cka(X, Y, t):
    def k(A):
        D2 = ((A[:, None, :] - A[None, :, :]) ** 2).sum(-1)
        D = np.sqrt(D2)
        med = np.median(D[np.triu_indices(A.shape[0], 1)])
        sigma = t * med
        return np.exp(-D2 / (2 * sigma ** 2))
    K, L = k(X), k(Y)
    return hsic_biased(K, L) / np.sqrt(hsic_biased(K, K) * hsic_biased(L, L))


def mutual_knn(X, Y, k):
    def nn(A):
        D = ((A[:, None, :] - A[None, :, :]) ** 2).sum(-1)
        np.fill_diagonal(D, np.inf)
        return [set(np.argsort(D[i], kind="stable")[:k]) for i in range(A.shape[0])]
    a, b = nn(X), nn(Y)
    return np.mean([len(p & q) / k for p, q in zip(a, b)])


def rel_dist_to_span(z, Z):
    """‖z - proj_span(Z) z‖ / ‖z‖ by least squares; Z columns span the subspace."""
    if Z.shape[1] == 0:
        return 1.0
    coef, *_ = np.linalg.lstsq(Z, z, rcond=None)
    return np.linalg.norm(z - Z @ coef) / np.linalg.norm(z)


def max_match(X, Y, eps, norm_tol=1e-16):
    """Wang et al. maximum ε-match by repeated lstsq on the raw activation vectors (columns)."""
    xs = [i for i in range(X.shape[1]) if np.linalg.norm(X[:, i]) > norm_tol]
    ys = [j for j in range(Y.shape[1]) if np.linalg.norm(Y[:, j]) > norm_tol]
    while True:
        nx = [i for i in xs if rel_dist_to_span(X[:, i], Y[:, ys]) <= eps]
        ny = [j for j in ys if rel_dist_to_span(Y[:, j], X[:, nx]) <= eps]
        if nx == xs and ny == ys:
            return xs, ys
        xs, ys = nx, ny


def alignment_curve(Phi, labels, n_classes):
    P = np.hstack([Phi, np.ones((Phi.shape[0], 1))])
    P = P / np.linalg.norm(P, axis=1, keepdims=True)
    U, S, Vt = np.linalg.svd(P, full_matrices=False)
    T = np.eye(n_classes)[labels]
    a = ((U.T @ T) ** 2).sum(axis=1) / (T ** 2).sum()
    return np.cumsum(a), S


def lasso_r2(Xtr, ytr, Xte, yte, alpha):
    """sklearn Lasso on raw (centred by the training mean) data: validation R² and non-zeros."""
    from sklearn.linear_model import Lasso, LinearRegression
    if alpha == 0:
        model = LinearRegression().fit(Xtr, ytr)
    else:
        model = Lasso(alpha=alpha, fit_intercept=True, tol=1e-12, max_iter=100000).fit(Xtr, ytr)
    pred = model.predict(Xte)
    return pred, model.coef_


def minimal_match(X, Y, eps, v):
    """Wang et al. minimal match of neuron id v (A: j, B: d1 + j) by brute re-running max_match."""
    d1 = X.shape[1]
    xs, ys = max_match(X, Y, eps)
    cur = sorted(xs + [d1 + j for j in ys])
    for u in list(cur):
        if u == v or u not in cur:
            continue
        trial = [w for w in cur if w != u]
        ax = [w for w in trial if w < d1]
        by = [w - d1 for w in trial if w >= d1]
        mx, my = max_match(X[:, ax], Y[:, by], eps)
        got = [ax[i] for i in mx] + [d1 + by[j] for j in my]
        if v in got:
            cur = sorted(got)
    return cur


# --------------------------------------------------------------- classic measures (issue 14)
# Each from the centred data matrices themselves (lstsq, QR, SVD, n × n RDMs), never from moments.

def drop_dead(X, tol=1e-8):
    """Columns whose variance is above tol × the largest (the package's dead-unit rule)."""
    v = X.var(axis=0)
    return X[:, v > tol * v.max()]


def cca_rhos(X, Y):
    """Canonical correlations: cosines of the principal angles between the centred column spans
    (orthonormal bases by QR, then SVD of QxᵀQy; Björck & Golub)."""
    Qx, _ = np.linalg.qr(centre(X))
    Qy, _ = np.linalg.qr(centre(Y))
    return np.linalg.svd(Qx.T @ Qy, compute_uv=False)


def cca_ridge_rhos(X, Y, ridge):
    """Ridge CCA: generalised eigenproblem of the regularised covariances, solved by scipy."""
    from scipy.linalg import eigh
    Xc, Yc = centre(X), centre(Y)
    cxx, cyy, cxy = Xc.T @ Xc, Yc.T @ Yc, Xc.T @ Yc
    cxx = cxx + ridge * np.trace(cxx) / cxx.shape[0] * np.eye(cxx.shape[0])
    cyy = cyy + ridge * np.trace(cyy) / cyy.shape[0] * np.eye(cyy.shape[0])
    # ρ² are the eigenvalues of cxx⁻¹ cxy cyy⁻¹ cyx
    w = eigh(cxy @ np.linalg.solve(cyy, cxy.T), cxx, eigvals_only=True)[::-1]
    return np.sqrt(np.clip(w[:min(X.shape[1], Y.shape[1])], 0, None))


def svcca(X, Y, kept):
    """Raghu et al.: SVD of each centred matrix, keep the leading components reaching `kept` of the variance."""
    def reduce(A):
        U, S, Vt = np.linalg.svd(centre(A), full_matrices=False)
        frac = np.cumsum(S ** 2) / np.sum(S ** 2)
        k = int(np.argmax(frac >= kept - 1e-12)) + 1
        return U[:, :k] * S[:k]
    return float(np.mean(cca_rhos(reduce(X), reduce(Y))))


def pwcca_google(X, Y):
    """google/svcca pwcca.py, on centred canonical variates: side with fewer units, QR of the
    variates, α_i ∝ Σ_j |⟨p_i, x_j⟩| over that side's (raw) units. Canonical variates of the
    smaller side from the SVD of QxᵀQy."""
    Xc, Yc = centre(X), centre(Y)
    Qx, _ = np.linalg.qr(Xc)
    Qy, _ = np.linalg.qr(Yc)
    U, rho, Vt = np.linalg.svd(Qx.T @ Qy, full_matrices=False)
    if X.shape[1] <= Y.shape[1]:
        H, acts = Qx @ U, X             # canonical variates of X (orthonormal), raw activations
    else:
        H, acts = Qy @ Vt.T, Y
    P, _ = np.linalg.qr(H)
    w = np.abs(P.T @ acts).sum(axis=1)
    w = w / w.sum()
    return float(np.sum(w * rho))


def procrustes(X, Y):
    """(angle, distance) by solving orthogonal Procrustes explicitly: min_Q ‖X̂ − ŶQ‖_F over
    orthogonal-columned Q after zero-padding to equal widths, X̂, Ŷ centred at unit norm."""
    Xc, Yc = centre(X), centre(Y)
    d = max(X.shape[1], Y.shape[1])
    Xp = np.hstack([Xc, np.zeros((X.shape[0], d - X.shape[1]))]) / np.linalg.norm(Xc)
    Yp = np.hstack([Yc, np.zeros((Y.shape[0], d - Y.shape[1]))]) / np.linalg.norm(Yc)
    U, _, Vt = np.linalg.svd(Yp.T @ Xp)
    Q = U @ Vt                                  # argmin ‖Xp − Yp Q‖_F (Schönemann)
    dist = np.linalg.norm(Xp - Yp @ Q) ** 2
    cos = np.sum(Xp * (Yp @ Q))                 # ⟨X̂, ŶQ⟩ = ‖X̂ᵀŶ‖*
    return float(np.arccos(np.clip(cos, -1, 1))), float(dist)


def linreg_r2(T, P):
    """In-sample R² of centred T from centred P by least squares (lstsq with an intercept)."""
    A = np.hstack([P, np.ones((P.shape[0], 1))])
    coef, *_ = np.linalg.lstsq(A, T, rcond=None)
    resid = T - A @ coef
    return float(1.0 - np.sum(resid ** 2) / np.sum(centre(T) ** 2))


def rsa_sqeuclid(X, Y, kind):
    """Squared-Euclidean RDMs over all pairs i < j, compared by Pearson or cosine."""
    def rdm(A):
        D = ((A[:, None, :] - A[None, :, :]) ** 2).sum(-1)
        return D[np.triu_indices(A.shape[0], 1)]
    dx, dy = rdm(X), rdm(Y)
    if kind == "pearson":
        return float(np.corrcoef(dx, dy)[0, 1])
    return float(dx @ dy / np.sqrt((dx @ dx) * (dy @ dy)))
