"""The classic similarity measures from the second moments: CCA family, Procrustes, linear regression, RSA.

Every function takes in-memory arrays ``X`` (n, d1), ``Y`` (n, d2) — rows are samples —
or any object with the public :class:`~convergent.moments.Moments` statistics (``n``,
``cxx``, ``cyy``, ``cxy``, ``var_x``, ``var_y``, ``centred_debias_terms()``, ``meta``),
e.g. a Moments or a :class:`CentredStats` built once per layer (cross-layer tables).
Everything is on column-centred data X̃, Ỹ.

=========================  ====================================================  ===========  =========
measure                    definition                                            kind         range
=========================  ====================================================  ===========  =========
``cca_mean``               ρ̄ = mean canonical correlation                        similarity   [0, 1]
``cca_r2``                 R²_CCA = mean ρ² (Kornblith et al. 2019)              similarity   [0, 1]
``svcca``                  ρ̄ after keeping each net's top principal directions   similarity   [0, 1]
                           that explain ``variance_kept`` of its variance
``pwcca``                  Σ α_i ρ_i, projection weights (Morcos et al. 2018)     similarity   [0, 1]
``procrustes_angle``       arccos(‖X̃ᵀỸ‖* / (‖X̃‖_F ‖Ỹ‖_F)) (Williams et al.)      distance     [0, π/2]
``procrustes_distance``    2 − 2‖X̃ᵀỸ‖* / (‖X̃‖_F ‖Ỹ‖_F) (Ding et al.)            distance     [0, 2]
``linreg_r2_a_from_b``     ‖Q_Ỹᵀ X̃‖²_F / ‖X̃‖²_F, in-sample least squares         similarity   [0, 1]
``rsa_sqeuclid_*``         Pearson / cosine of the squared-Euclidean RDMs over    similarity   [−1, 1] /
                           sample pairs i < j                                                  [0, 1]
=========================  ====================================================  ===========  =========

CCA (canonical correlations ρ_i = singular values of Σxx^-½ Σxy Σyy^-½, over the alive
units) is invariant to any invertible linear map of either side. It is unavailable
(:class:`MeasureUnavailable`) when a covariance of the alive units is singular (smallest
eigenvalue ≤ ``singular_tol`` × largest) or when d1 + d2 > n − 1: the column spans of
X̃ and Ỹ then meet in ≥ d1 + d2 − (n − 1) dimensions and that many ρ are 1 whatever the
data (Kornblith et al.'s Theorem 1 is the case d ≥ n). A declared ``ridge`` > 0
(Σ + ridge · mean variance · I) makes plain CCA and PWCCA defined anyway.

PWCCA follows **google/svcca's** ``pwcca.py`` (the side with fewer units, ties → A; the
canonical variates h_i = X̃ a_i are orthonormalised by QR and α_i ∝ Σ_j |⟨p_i, x_j⟩| over
that side's units), with one deliberate difference: google's code adds each neuron's
mean back to canonical direction i before the QR, which makes the weights depend on
translation; here the variates stay centred (then raw and centred x_j give the same
inner products). Ding et al.'s code normalises differently and, per docs/measures.md (PWCCA), gives other
numbers on the same data (0.8933 against google's 0.9589); that comparison is not rerun here.
Like every implementation, PWCCA depends on the basis the SVD picks inside a block of
tied canonical correlations (e.g. several exactly shared directions, all ρ = 1).

Dead units (variance ≤ tol × the largest, :func:`convergent.measures.dead_units`) are
dropped before CCA, SVCCA, PWCCA and linear regression (a constant column has no
direction to correlate); Procrustes and RSA use every column, like linear CKA (a dead
column adds exactly nothing).

The ``*_from_grams`` functions compute the Gram-expressible measures from the two centred
n × n Gram matrices K = X̃X̃ᵀ, L = ỸỸᵀ instead (the dual form for views wider than n).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convergent.measures._common import DEFAULT_DEAD_TOL, FormUnavailable, MeasureUnavailable, dead_units
from convergent.moments import DUAL, Moments

#: relative eigenvalue below which a covariance counts as singular: float64 moments resolve
#: ~1e-16 of the largest eigenvalue, mixed-precision (float32 block products) ones only ~1e-7
SINGULAR_TOL = {"float64": 1e-10, "mixed": 1e-6}


@dataclass
class CentredStats:
    """Second moments of centred X (n, d1) and Y (n, d2) with the public Moments API used here.

    Build per layer once and pair cheaply (:meth:`pair`): the cross-layer tables need
    every layer of A against every layer of B.
    """

    n: int
    cxx: np.ndarray
    cyy: np.ndarray
    cxy: np.ndarray
    a: np.ndarray          # ‖x̃_i‖², (n,)
    b: np.ndarray          # ‖ỹ_i‖², (n,)
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_centred(cls, Xc: np.ndarray, Yc: np.ndarray) -> "CentredStats":
        """From column-centred float64 arrays (rows = samples)."""
        return cls(Xc.shape[0], Xc.T @ Xc, Yc.T @ Yc, Xc.T @ Yc, np.einsum("ij,ij->i", Xc, Xc),
                   np.einsum("ij,ij->i", Yc, Yc), {"precision": "float64"})

    @property
    def var_x(self) -> np.ndarray:
        return np.maximum(np.diag(self.cxx), 0.0) / self.n

    @property
    def var_y(self) -> np.ndarray:
        return np.maximum(np.diag(self.cyy), 0.0) / self.n

    def centred_debias_terms(self) -> dict[str, float]:
        return {"sum_ab": float(self.a @ self.b), "sum_aa": float(self.a @ self.a),
                "sum_bb": float(self.b @ self.b), "tr_x": float(self.a.sum()), "tr_y": float(self.b.sum())}


def _stats(X: Any, Y: np.ndarray | None) -> Any:
    if getattr(X, "form", None) == DUAL:   # CCA needs the d × d sums a Gram cannot give
        raise FormUnavailable(f"needs the d × d feature-space sums (cxx, cyy, cxy); {X.describe()}")
    if isinstance(X, (Moments, CentredStats)):
        if Y is not None:
            raise TypeError("pass either moments or two arrays, not both")
        return X
    if Y is None:
        raise TypeError("second array Y is missing")
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"need X (n, d1) and Y (n, d2) with the same rows, got {X.shape} and {Y.shape}")
    return CentredStats.from_centred(X - X.mean(axis=0), Y - Y.mean(axis=0))


def _singular_tol(m: Any, tol: float | None) -> float:
    if tol is not None:
        return float(tol)
    return SINGULAR_TOL["mixed" if m.meta.get("precision") == "mixed" else "float64"]


def _alive(m: Any, dead_tol: float, dead_atol: float) -> tuple[np.ndarray, np.ndarray]:
    d = dead_units(m, dead_tol, dead_atol)
    ia, ib = np.flatnonzero(~d.a), np.flatnonzero(~d.b)
    if ia.size == 0 or ib.size == 0:
        raise MeasureUnavailable(f"no alive units (A: {ia.size}, B: {ib.size})")
    return ia, ib


def _inv_sqrt(c: np.ndarray, side: str, tol: float, ridge: float) -> np.ndarray:
    """C^-½ of a symmetric PSD (d, d) scatter, with ridge · mean eigenvalue added; raises if singular."""
    w, v = np.linalg.eigh(c)
    top = float(w[-1]) if w.size else 0.0
    if ridge > 0:
        w = w + ridge * max(float(np.trace(c)) / c.shape[0], 0.0)
    elif not (top > 0 and w[0] > tol * top):
        raise MeasureUnavailable(f"the covariance of {side}'s alive units is singular (smallest eigenvalue "
                                 f"{w[0]:.3g} <= {tol:g} x largest {top:.3g}); set cca_ridge > 0 for regularised CCA")
    return (v / np.sqrt(w)) @ v.T


def _check_rows(n: int, d1: int, d2: int, what: str) -> None:
    if d1 + d2 > n - 1:
        raise MeasureUnavailable(f"{what} of {d1} + {d2} alive dimensions on n = {n} samples: d1 + d2 > n - 1, "
                                 f"so at least {d1 + d2 - (n - 1)} canonical correlations are 1 whatever the "
                                 "data (Kornblith et al. 2019, Theorem 1); needs more samples than units, "
                                 "or cca_ridge > 0")


@dataclass(frozen=True)
class CCAResult:
    """Canonical correlations ``rho`` (k,), descending, k = min(alive d1, alive d2), and the
    coefficient matrices ``a`` (d1a, k), ``b`` (d2a, k) over the alive units ``units_a``/``units_b``
    (canonical variates h_i = X̃[:, units_a] a[:, i])."""

    rho: np.ndarray
    a: np.ndarray
    b: np.ndarray
    units_a: np.ndarray
    units_b: np.ndarray


def cca(X: Any, Y: np.ndarray | None = None, ridge: float = 0.0, singular_tol: float | None = None,
        dead_tol: float = DEFAULT_DEAD_TOL, dead_atol: float = 0.0) -> CCAResult:
    """Plain (``ridge`` = 0) or ridge-regularised CCA of the centred alive units of X and Y."""
    m = _stats(X, Y)
    ia, ib = _alive(m, dead_tol, dead_atol)
    if ridge <= 0:
        _check_rows(m.n, ia.size, ib.size, "CCA")
    tol = _singular_tol(m, singular_tol)
    cxx, cyy, cxy = m.cxx[np.ix_(ia, ia)], m.cyy[np.ix_(ib, ib)], m.cxy[np.ix_(ia, ib)]
    wx, wy = _inv_sqrt(cxx, "A", tol, ridge), _inv_sqrt(cyy, "B", tol, ridge)
    u, s, vt = np.linalg.svd(wx @ cxy @ wy, full_matrices=False)
    return CCAResult(np.clip(s, 0.0, 1.0), wx @ u, wy @ vt.T, ia, ib)


def cca_mean(X: Any, Y: np.ndarray | None = None, **kw: Any) -> float:
    """Mean canonical correlation ρ̄ (similarity in [0, 1])."""
    return float(np.mean(cca(X, Y, **kw).rho))


def cca_r2(X: Any, Y: np.ndarray | None = None, **kw: Any) -> float:
    """Mean squared canonical correlation R²_CCA (similarity in [0, 1])."""
    return float(np.mean(cca(X, Y, **kw).rho ** 2))


def _top_directions(c: np.ndarray, kept: float, side: str) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-pairs (w (k,), v (d, k)) of the fewest leading principal directions whose
    variance reaches ``kept`` of the total."""
    w, v = np.linalg.eigh(c)
    w, v = w[::-1], v[:, ::-1]
    w = np.maximum(w, 0.0)
    total = float(w.sum())
    if not total > 0:
        raise MeasureUnavailable(f"{side} has no variance")
    k = int(np.searchsorted(np.cumsum(w) / total, kept - 1e-12) + 1)
    return w[:min(k, w.size)], v[:, :min(k, w.size)]


def svcca(X: Any, Y: np.ndarray | None = None, variance_kept: float = 0.99, singular_tol: float | None = None,
          dead_tol: float = DEFAULT_DEAD_TOL, dead_atol: float = 0.0) -> float:
    """SVCCA (Raghu et al. 2017): mean CCA of each net's top principal components that explain
    ``variance_kept`` of its variance (similarity in [0, 1])."""
    if not 0 < variance_kept <= 1:
        raise ValueError(f"variance_kept must be in (0, 1], got {variance_kept}")
    m = _stats(X, Y)
    ia, ib = _alive(m, dead_tol, dead_atol)
    wa, va = _top_directions(m.cxx[np.ix_(ia, ia)], variance_kept, "A")
    wb, vb = _top_directions(m.cyy[np.ix_(ib, ib)], variance_kept, "B")
    _check_rows(m.n, wa.size, wb.size, "SVCCA")
    tol = _singular_tol(m, singular_tol)
    for w, side in ((wa, "A"), (wb, "B")):
        if not w[-1] > tol * w[0]:
            raise MeasureUnavailable(f"a kept principal direction of {side} has no variance")
    # in the principal basis the covariances are diagonal: whitening is a division
    cross = (va.T @ m.cxy[np.ix_(ia, ib)] @ vb) / np.sqrt(np.outer(wa, wb))
    return float(np.mean(np.clip(np.linalg.svd(cross, compute_uv=False), 0.0, 1.0)))


def pwcca(X: Any, Y: np.ndarray | None = None, ridge: float = 0.0, singular_tol: float | None = None,
          dead_tol: float = DEFAULT_DEAD_TOL, dead_atol: float = 0.0, result: CCAResult | None = None) -> float:
    """Projection-weighted CCA (Morcos et al. 2018) as google/svcca computes it, on centred
    variates (module docstring). Similarity in [0, 1]. ``result``: the :func:`cca` of the same
    moments and parameters, if already computed (saves its two eigendecompositions)."""
    m = _stats(X, Y)
    r = result if result is not None else cca(m, ridge=ridge, singular_tol=singular_tol, dead_tol=dead_tol,
                                              dead_atol=dead_atol)
    if r.units_a.size <= r.units_b.size:
        c, coef = m.cxx[np.ix_(r.units_a, r.units_a)], r.a
    else:
        c, coef = m.cyy[np.ix_(r.units_b, r.units_b)], r.b
    # H = X̃ coef; QR: H = P R with RᵀR = HᵀH = coefᵀ C coef, so Pᵀ X̃ = R⁻ᵀ coefᵀ C
    gram = coef.T @ c @ coef
    R = np.linalg.cholesky(gram).T
    proj = np.linalg.solve(R.T, coef.T @ c)          # (k, d): ⟨p_i, x_j⟩
    weights = np.abs(proj).sum(axis=1)
    return float(np.sum(weights * r.rho) / weights.sum())


# ------------------------------------------------------------------ Procrustes / shape metrics

def _nuclear_and_norms(m: Any) -> tuple[float, float, float]:
    nuc = float(np.linalg.svd(m.cxy, compute_uv=False).sum())
    tx, ty = float(np.trace(m.cxx)), float(np.trace(m.cyy))
    if not (tx > 0 and ty > 0):
        raise MeasureUnavailable("a representation is constant over the samples; Procrustes undefined")
    return nuc, tx, ty


def _shape(nuc: float, tx: float, ty: float, kind: str) -> float:
    c = min(max(nuc / np.sqrt(tx * ty), 0.0), 1.0)
    if kind == "angle":
        return float(np.arccos(c))
    if kind == "distance":
        return float(2.0 - 2.0 * c)
    raise ValueError(f"kind must be 'angle' or 'distance', got {kind!r}")


def procrustes_angle(X: Any, Y: np.ndarray | None = None) -> float:
    """Angular shape metric arccos(‖X̃ᵀỸ‖* / (‖X̃‖_F ‖Ỹ‖_F)) (Williams et al. 2021); distance in [0, π/2]."""
    return _shape(*_nuclear_and_norms(_stats(X, Y)), "angle")


def procrustes_distance(X: Any, Y: np.ndarray | None = None) -> float:
    """Procrustes distance of the unit-Frobenius-norm centred X̃, Ỹ: 2 − 2‖X̃ᵀỸ‖*/(‖X̃‖‖Ỹ‖)
    (Ding et al. 2021); distance in [0, 2]."""
    return _shape(*_nuclear_and_norms(_stats(X, Y)), "distance")


# ------------------------------------------------------------------ linear regression

def linreg_r2(X: Any, Y: np.ndarray | None = None, direction: str = "a_from_b", rank_tol: float | None = None,
              dead_tol: float = DEFAULT_DEAD_TOL, dead_atol: float = 0.0) -> float:
    """In-sample least-squares R² of one centred representation from the other (Kornblith et al.).

    ``a_from_b``: ‖Q_Ỹᵀ X̃‖²_F / ‖X̃‖²_F = tr(Σxy Σyy⁺ Σyx) / tr Σxx over the alive units,
    Σyy⁺ the pseudo-inverse keeping eigenvalues > ``rank_tol`` × the largest; ``b_from_a``
    swaps the roles. Similarity in [0, 1]; asymmetric. Unavailable when the predictor spans
    every centred direction (rank ≥ n − 1, then R² = 1 whatever the data).
    """
    m = _stats(X, Y)
    ia, ib = _alive(m, dead_tol, dead_atol)
    if direction == "a_from_b":
        ct, cp, cross = m.cxx[np.ix_(ia, ia)], m.cyy[np.ix_(ib, ib)], m.cxy[np.ix_(ia, ib)]
    elif direction == "b_from_a":
        ct, cp, cross = m.cyy[np.ix_(ib, ib)], m.cxx[np.ix_(ia, ia)], m.cxy[np.ix_(ia, ib)].T
    else:
        raise ValueError(f"direction must be 'a_from_b' or 'b_from_a', got {direction!r}")
    w, v = np.linalg.eigh(cp)
    keep = w > _singular_tol(m, rank_tol) * w[-1]
    rank = int(keep.sum())
    if rank >= m.n - 1:
        raise MeasureUnavailable(f"the predictor has rank {rank} >= n - 1 = {m.n - 1}: it spans every centred "
                                 "direction and R² = 1 whatever the data; needs more samples than units")
    z = cross @ v[:, keep]                          # (d_t, rank): Σtp V
    return float(np.sum(z * z / w[keep]) / np.trace(ct))


# ------------------------------------------------------------------ RSA

def _rsa_sums(n: int, tr_x: float, tr_y: float, sum_ab: float, sum_aa: float, sum_bb: float, frob_xy: float,
              frob_xx: float, frob_yy: float) -> tuple[float, float, float, float, float, int]:
    """Sums over the pairs i < j of the squared-Euclidean RDMs D^x, D^y of centred rows.

    D_ij = a_i + a_j − 2K_ij with a_i = ‖x̃_i‖², K = X̃X̃ᵀ and K1 = 0 (centred), so
    Σ_{i<j} D^x = n Σa, Σ_{i<j} D^x D^y = n Σab + Σa Σb + 2‖X̃ᵀỸ‖²_F and
    Σ_{i<j} (D^x)² = n Σa² + (Σa)² + 2‖X̃ᵀX̃‖²_F. Returns (sx, sy, sxy, sxx, syy, pairs).
    """
    return (n * tr_x, n * tr_y, n * sum_ab + tr_x * tr_y + 2.0 * frob_xy, n * sum_aa + tr_x ** 2 + 2.0 * frob_xx,
            n * sum_bb + tr_y ** 2 + 2.0 * frob_yy, n * (n - 1) // 2)


def _rsa_from_sums(sums: tuple[float, float, float, float, float, int], kind: str) -> float:
    sx, sy, sxy, sxx, syy, p = sums
    if p < 2:
        raise MeasureUnavailable("RSA needs at least 3 samples (2 pairs)")
    if kind == "cosine":
        if not (sxx > 0 and syy > 0):
            raise MeasureUnavailable("a representation is constant over the samples; RSA undefined")
        return float(sxy / np.sqrt(sxx * syy))
    if kind == "pearson":
        vx, vy = p * sxx - sx * sx, p * syy - sy * sy
        if not (vx > 1e-12 * p * sxx and vy > 1e-12 * p * syy):
            raise MeasureUnavailable("all pairwise distances are equal in a representation; RSA Pearson undefined")
        return float((p * sxy - sx * sy) / np.sqrt(vx * vy))
    raise ValueError(f"kind must be 'pearson' or 'cosine', got {kind!r}")


def rsa_sqeuclid(X: Any, Y: np.ndarray | None = None, kind: str = "pearson") -> float:
    """RSA: Pearson (``kind="pearson"``, in [−1, 1]) or cosine (in [0, 1]) similarity of the
    squared-Euclidean dissimilarities ‖x_i − x_j‖², ‖y_i − y_j‖² over all pairs i < j, exactly
    from the moments (:func:`_rsa_sums`). Invariant to orthogonal maps and translation."""
    m = _stats(X, Y)
    t = m.centred_debias_terms()
    cxx, cyy, cxy = m.cxx, m.cyy, m.cxy
    sums = _rsa_sums(m.n, t["tr_x"], t["tr_y"], t["sum_ab"], t["sum_aa"], t["sum_bb"], float(np.sum(cxy * cxy)),
                     float(np.sum(cxx * cxx)), float(np.sum(cyy * cyy)))
    return _rsa_from_sums(sums, kind)


# ------------------------------------------------------------------ the dual (Gram) form

def _check_grams(*grams: np.ndarray) -> int:
    """n of centred Gram matrices (n, n); a Gram of uncentred rows (K1 ≠ 0) is refused, not used:
    the formulas here assume centred rows (centre with H K H, H = I − 11ᵀ/n)."""
    n = grams[0].shape[0]
    for K in grams:
        if K.ndim != 2 or K.shape != (n, n):
            raise ValueError(f"need square Gram matrices of the same size, got {[g.shape for g in grams]}")
        scale = max(float(np.trace(K)), np.finfo(float).tiny)
        if np.abs(K.sum(axis=0)).max() > 1e-5 * scale:   # mixed-precision Grams centre to ~1e-7
            raise ValueError("the Gram matrix is not of centred rows (K·1 != 0); centre it first: H K H")
    return n


def gram_eig(K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positive eigen-pairs (w (r,), u (n, r)) of a centred PSD Gram (n, n): the range of K,
    eigenvalues ≤ 1e-12 × the largest dropped as rounding. Cache it per layer when one layer
    meets many (cross-layer tables)."""
    w, v = np.linalg.eigh(K)
    keep = w > 1e-12 * max(float(w[-1]), 0.0)
    return w[keep], v[:, keep]


def procrustes_from_eigs(eig_x: tuple[np.ndarray, np.ndarray], eig_y: tuple[np.ndarray, np.ndarray],
                         kind: str = "angle") -> float:
    """:func:`procrustes_from_grams` from the two Grams' :func:`gram_eig` (tr K = Σ w)."""
    (wx, ux), (wy, uy) = eig_x, eig_y
    if wx.size == 0 or wy.size == 0:
        raise MeasureUnavailable("a representation is constant over the samples; Procrustes undefined")
    core = np.sqrt(wx)[:, None] * (ux.T @ uy) * np.sqrt(wy)[None, :]
    return _shape(float(np.linalg.svd(core, compute_uv=False).sum()), float(wx.sum()), float(wy.sum()), kind)


def procrustes_from_grams(Kx: np.ndarray, Ky: np.ndarray, kind: str = "angle") -> float:
    """Procrustes angle/distance from the centred Grams K = X̃X̃ᵀ, L = ỸỸᵀ (n, n).

    With K = U S Uᵀ, X̃ = U S^½ Vᵀ, so X̃ᵀỸ = V S^½ Uᵀ U' S'^½ V'ᵀ and its nuclear norm is that
    of S^½ (Uᵀ U') S'^½ (orthogonal factors drop out); ‖X̃‖²_F = tr K.
    """
    _check_grams(Kx, Ky)
    return procrustes_from_eigs(gram_eig(Kx), gram_eig(Ky), kind)


def svcca_from_eigs(eig_x: tuple[np.ndarray, np.ndarray], eig_y: tuple[np.ndarray, np.ndarray],
                    variance_kept: float = 0.99) -> float:
    """:func:`svcca` from the two Grams' :func:`gram_eig`: the top principal components of X̃ are
    U_k S_k^½ (n, k), so the CCA of the kept components is the set of cosines of the principal
    angles between span U_k and span U'_k': ρ = singular values of U_kᵀ U'_k'. Exact for d > n,
    where the d × d form cannot be formed; unavailable when k + k' > n − 1."""
    def top(eig: tuple[np.ndarray, np.ndarray], side: str) -> np.ndarray:
        w, u = eig
        if w.size == 0:
            raise MeasureUnavailable(f"{side} has no variance")
        order = np.argsort(w)[::-1]
        w, u = w[order], u[:, order]
        k = int(np.searchsorted(np.cumsum(w) / w.sum(), variance_kept - 1e-12) + 1)
        return u[:, :min(k, w.size)]
    ux, uy = top(eig_x, "A"), top(eig_y, "B")
    _check_rows(ux.shape[0], ux.shape[1], uy.shape[1], "SVCCA")
    return float(np.mean(np.clip(np.linalg.svd(ux.T @ uy, compute_uv=False), 0.0, 1.0)))


def linreg_r2_from_eig(Kt: np.ndarray, eig_p: tuple[np.ndarray, np.ndarray]) -> float:
    """:func:`linreg_r2_from_grams` with the predictor's :func:`gram_eig` given."""
    n = Kt.shape[0]
    _, u = eig_p
    if u.shape[1] >= n - 1:
        raise MeasureUnavailable(f"the predictor has rank {u.shape[1]} >= n - 1 = {n - 1}: it spans every "
                                 "centred direction and R² = 1 whatever the data; needs more samples than units")
    tt = float(np.trace(Kt))
    if not tt > 0:
        raise MeasureUnavailable("the target representation is constant over the samples")
    return float(np.sum(u * (Kt @ u)) / tt)


def linreg_r2_from_grams(Kt: np.ndarray, Kp: np.ndarray) -> float:
    """R² of the target (Gram ``Kt``) from the predictor (Gram ``Kp``): tr(P Kt) / tr Kt with
    P = UUᵀ the projector onto the predictor's column span (Kp's range). Unavailable at rank ≥ n − 1."""
    _check_grams(Kt, Kp)
    return linreg_r2_from_eig(Kt, gram_eig(Kp))


def rsa_sqeuclid_from_grams(Kx: np.ndarray, Ky: np.ndarray, kind: str = "pearson") -> float:
    """:func:`rsa_sqeuclid` from the centred Grams (n, n): a = diag K, ‖X̃ᵀỸ‖²_F = Σ K∘L."""
    n = _check_grams(Kx, Ky)
    a, b = np.diag(Kx), np.diag(Ky)
    sums = _rsa_sums(n, float(a.sum()), float(b.sum()), float(a @ b), float(a @ a), float(b @ b),
                     float(np.sum(Kx * Ky)), float(np.sum(Kx * Kx)), float(np.sum(Ky * Ky)))
    return _rsa_from_sums(sums, kind)
