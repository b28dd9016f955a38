"""Sparse (one-to-many) prediction of B's units from A's units (Li et al. 2016).

Each alive unit y_j of B, standardised, is predicted from all alive units of A,
standardised, by an L1-penalised linear map (sklearn's Lasso objective):

    min_w  (1/2n₀) Σ_i (ỹ_ij - x̃_iᵀ w)² + α ‖w‖₁

fitted on **fold 0** from the covariance form (the objective is ½wᵀRw - wᵀr_j +
const with R, r_j the fold-0 correlation matrices), with sklearn's coordinate
descent on the Gram (``lasso_path(..., precompute=R, Xy=r_j)``), warm-started
along the α path; α = 0 is ordinary least squares (needs n₀ > d₁; min-norm
``lstsq`` if R is singular). Standardisation and intercept use fold-0 means and
standard deviations. The fit is evaluated on **fold 1** exactly, from the
fold-1 moments re-centred at the fold-0 means (a quadratic form):

    MSE_j = E₁[ỹ_j²] - 2 wᵀ E₁[x̃ ỹ_j] + wᵀ E₁[x̃ x̃ᵀ] w,   R²_j = 1 - MSE_j / Var₁(ỹ_j).

R² is a similarity (1 = perfectly predicted, can be negative); MSE is a
distance-like loss; ``nonzero`` counts weights ≠ 0 per predicted unit.
Units dead in either fold are excluded from predictors and targets.
``fit_fold=1`` swaps the roles (fit on fold 1, evaluate on fold 0); :func:`heldout_r2`
uses both to choose α on one fold and report on the other.
Invariant to per-unit affine maps of either net; not to rotations of B
(for α > 0, not of A either).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import lasso_path

from convergent.measures._common import DEFAULT_DEAD_TOL, MeasureUnavailable, as_moments, dead_units
from convergent.moments import Moments

DEFAULT_ALPHAS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


@dataclass(frozen=True)
class SparseFit:
    """Per α: ``r2[i, j]``, ``mse[i, j]``, ``nonzero[i, j]`` for α ``alphas[i]`` and target unit ``targets[j]``.

    Rows of an α that could not be fitted (α = 0 with n₀ ≤ d₁) are NaN and listed in ``unavailable``.
    ``weights[i]`` is (d_alive_A, n_targets); ``not_converged[i]`` counts fits that hit ``max_iter``.
    ``target_var[j]``: the evaluated fold's variance of target ``j`` in fitted-fold standard units
    (the denominator of ``r2[:, j]``).
    """

    alphas: np.ndarray
    targets: np.ndarray
    predictors: np.ndarray
    r2: np.ndarray
    mse: np.ndarray
    nonzero: np.ndarray
    weights: list[np.ndarray | None]
    not_converged: np.ndarray
    unavailable: dict[float, str]
    target_var: np.ndarray | None = None


def _std_problem(f0: Moments, ia: np.ndarray, ib: np.ndarray):
    n0 = f0.n
    mx, my = f0.mean_x[ia], f0.mean_y[ib]
    sx, sy = np.sqrt(f0.var_x[ia]), np.sqrt(f0.var_y[ib])
    R = f0.cxx[np.ix_(ia, ia)] / n0 / np.outer(sx, sx)
    r = f0.cxy[np.ix_(ia, ib)] / n0 / np.outer(sx, sy)
    return R, r, mx, my, sx, sy


def sparse_prediction(X: np.ndarray | Moments, Y: np.ndarray | None = None,
                      alphas: Sequence[float] = DEFAULT_ALPHAS, max_targets: int | None = 64,
                      max_iter: int = 1000, tol: float = 1e-4, dead_tol: float = DEFAULT_DEAD_TOL,
                      dead_atol: float = 0.0, fit_fold: int = 0) -> SparseFit:
    """Validation R², MSE and non-zero counts of the lasso prediction of Y's units from X (see module doc).

    ``max_targets``: predict at most this many alive units of B, evenly spaced in
    unit order (None = all); the cost is one coordinate-descent path per target.
    ``fit_fold``: the fold fitted on (0 or 1); the other one is evaluated.
    """
    if fit_fold not in (0, 1):
        raise ValueError(f"fit_fold must be 0 or 1, got {fit_fold!r}")
    m = as_moments(X, Y)
    dead = dead_units(m, dead_tol, dead_atol, folds=True)
    ia, ib = np.flatnonzero(~dead.a), np.flatnonzero(~dead.b)
    if ia.size == 0 or ib.size == 0:
        raise MeasureUnavailable("no units alive in both folds")
    if max_targets is not None and ib.size > max_targets:
        ib = ib[np.unique(np.linspace(0, ib.size - 1, max_targets).round().astype(int))]
    f0, f1 = m.fold(fit_fold), m.fold(1 - fit_fold)   # f0: fitted on, f1: evaluated on
    R, r, mx, my, sx, sy = _std_problem(f0, ia, ib)
    # fold-1 moments about the fold-0 means, in fold-0 standardised units
    dx, dy = f1.mean_x[ia] - mx, f1.mean_y[ib] - my
    Exx = (f1.cxx[np.ix_(ia, ia)] / f1.n + np.outer(dx, dx)) / np.outer(sx, sx)
    Exy = (f1.cxy[np.ix_(ia, ib)] / f1.n + np.outer(dx, dy)) / np.outer(sx, sy)
    var1 = f1.var_y[ib] / sy ** 2
    Eyy = var1 + (dy / sy) ** 2

    alphas = np.asarray(alphas, dtype=float)
    if np.any(alphas < 0):
        raise ValueError("alphas must be >= 0")
    k, t = alphas.size, ib.size
    W: list[np.ndarray | None] = [None] * k
    not_conv = np.zeros(k, dtype=int)
    unavailable: dict[float, str] = {}
    pos = np.flatnonzero(alphas > 0)
    if pos.size:
        order = pos[np.argsort(alphas[pos])[::-1]]          # path from large to small α (warm starts)
        coefs = np.zeros((order.size, ia.size, t))
        Rf = np.ascontiguousarray(R)
        fake_x, unit_y = np.zeros((1, ia.size)), np.ones(1)  # n_samples = 1 and ‖y‖² = 1: objective as above
        for j in range(t):
            with warnings.catch_warnings():
                # convergence is read off the returned duality gaps instead (stopping rule: gap < tol·‖y‖², ‖y‖² = 1)
                warnings.simplefilter("ignore", ConvergenceWarning)
                _, c, gaps = lasso_path(fake_x, unit_y, alphas=alphas[order], precompute=Rf,
                                        Xy=np.ascontiguousarray(r[:, j]), check_input=False, max_iter=max_iter,
                                        tol=tol)
            coefs[:, :, j] = c.T
            not_conv[order[np.asarray(gaps) > tol]] += 1
        for i, a in enumerate(order):
            W[a] = coefs[i]
    for a in np.flatnonzero(alphas == 0):
        if f0.n <= ia.size:
            unavailable[float(alphas[a])] = (f"least squares needs more fold-0 rows than predictors "
                                             f"(n0={f0.n} <= d={ia.size})")
            continue
        W[a] = np.linalg.lstsq(R, r, rcond=None)[0]
    r2 = np.full((k, t), np.nan)
    mse = np.full((k, t), np.nan)
    nz = np.full((k, t), np.nan)
    for i, w in enumerate(W):
        if w is None:
            continue
        mse[i] = Eyy - 2 * np.einsum("ij,ij->j", w, Exy) + np.einsum("ij,ij->j", w, Exx @ w)
        r2[i] = 1.0 - mse[i] / var1
        nz[i] = np.count_nonzero(w, axis=0)
    return SparseFit(alphas, ib, ia, r2, mse, nz, W, not_conv, unavailable, var1)


def pooled_r2(fit: SparseFit) -> np.ndarray:
    """Per α: 1 − Σ_j MSE_j / Σ_j Var(y_j) over the predicted units, the fraction of B's
    (standardised) variance the map explains on the evaluated fold. Unlike the mean of the
    per-unit R², a unit nearly constant on that fold cannot drive it to −∞. Shape (n_alphas,)."""
    return 1.0 - fit.mse.sum(axis=1) / float(np.sum(fit.target_var))


def heldout_r2(forward: SparseFit, backward: SparseFit) -> tuple[float, float]:
    """(α, R²): the penalty chosen on fold 0 and the pooled R² (:func:`pooled_r2`) it gives on fold 1.

    ``forward`` is fitted on fold 0 and evaluated on fold 1 (``fit_fold=0``), ``backward``
    fitted on fold 1 and evaluated on fold 0 (``fit_fold=1``), same targets and α grid.
    α is the one whose backward fit predicts fold 0 best (pooled R²); the reported R² is
    the forward fit's on fold 1 at that α. Fold 1 never scores the choice, so the maximum
    over the grid does not inflate the reported value (fold 1 did train the fits that
    scored it: the two are not independent samples, but no fold is both a choice's score
    and its report). α whose fits are unavailable in either direction are skipped; with
    none left, :class:`MeasureUnavailable`.
    """
    if not np.array_equal(forward.alphas, backward.alphas) or not np.array_equal(forward.targets,
                                                                                  backward.targets):
        raise ValueError("forward and backward fits need the same α grid and targets")
    score, report = pooled_r2(backward), pooled_r2(forward)
    ok = np.isfinite(score) & np.isfinite(report)
    if not ok.any():
        raise MeasureUnavailable("no α could be fitted on both folds")
    best = int(np.argmax(np.where(ok, score, -np.inf)))
    return float(forward.alphas[best]), float(report[best])
