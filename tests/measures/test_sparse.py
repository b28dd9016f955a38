import numpy as np
import pytest
from sklearn.linear_model import Lasso

from convergent.measures import MeasureUnavailable, sparse_prediction
from convergent.moments import moments_from_arrays


def _pair(rng, n=300, d1=6, d2=4):
    X = rng.standard_normal((n, d1)) * rng.uniform(0.5, 2, d1) + 1.0
    W = rng.standard_normal((d1, d2)) * (rng.random((d1, d2)) < 0.5)
    Y = X @ W + 0.5 * rng.standard_normal((n, d2)) + 2.0
    return X, Y


def _reference(X, Y, alpha):
    """sklearn Lasso on raw fold-0 rows (standardised with fold-0 stats), evaluated on raw fold-1 rows."""
    h = X.shape[0] // 2
    mx, sx, my, sy = X[:h].mean(0), X[:h].std(0), Y[:h].mean(0), Y[:h].std(0)
    Xtr, Ytr = (X[:h] - mx) / sx, (Y[:h] - my) / sy
    Xte, Yte = (X[h:] - mx) / sx, (Y[h:] - my) / sy
    if alpha == 0:
        W = np.linalg.lstsq(Xtr, Ytr, rcond=None)[0]
    else:
        W = np.stack([Lasso(alpha=alpha, fit_intercept=False, tol=1e-14, max_iter=1_000_000)
                      .fit(Xtr, Ytr[:, j]).coef_ for j in range(Y.shape[1])], axis=1)
    mse = ((Yte - Xte @ W) ** 2).mean(0)
    r2 = 1 - mse / Yte.var(0)
    return W, mse, r2


@pytest.mark.parametrize("alpha", [0.0, 1e-3, 1e-2, 1e-1, 0.5])
def test_lasso_vs_sklearn_raw(rng, alpha):
    X, Y = _pair(rng)
    fit = sparse_prediction(X, Y, alphas=[alpha], tol=1e-14, max_iter=100000)
    W, mse, r2 = _reference(X, Y, alpha)
    np.testing.assert_allclose(fit.weights[0], W, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(fit.mse[0], mse, rtol=1e-6)
    np.testing.assert_allclose(fit.r2[0], r2, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(fit.nonzero[0], np.count_nonzero(np.abs(W) > 1e-10, axis=0))
    assert fit.not_converged[0] == 0


def test_path_and_moments_equal_arrays(rng):
    X, Y = _pair(rng)
    alphas = [0.0, 1e-5, 1e-3, 1e-1]
    a = sparse_prediction(X, Y, alphas=alphas, tol=1e-12, max_iter=100000)
    b = sparse_prediction(moments_from_arrays(X, Y, chunk_rows=41), alphas=alphas, tol=1e-12, max_iter=100000)
    np.testing.assert_allclose(a.r2, b.r2, rtol=1e-8)
    assert np.all(np.diff(a.nonzero.mean(1)) <= 0)        # more penalty, fewer weights


def test_n_less_than_d(rng):
    X, Y = _pair(rng, n=10, d1=8)
    fit = sparse_prediction(X, Y, alphas=[0.0, 0.1])
    assert 0.0 in fit.unavailable and "n0=5" in fit.unavailable[0.0]
    assert np.isnan(fit.r2[0]).all() and np.isfinite(fit.r2[1]).all()


def test_self_pair_and_dead_units(rng):
    X, _ = _pair(rng)
    X[:, 2] = 0.0
    fit = sparse_prediction(X, X, alphas=[0.0, 1e-4])
    assert 2 not in fit.targets and 2 not in fit.predictors
    np.testing.assert_allclose(fit.r2[0], 1.0, atol=1e-10)
    with pytest.raises(MeasureUnavailable):
        sparse_prediction(np.zeros((20, 2)), X[:20])


def test_max_targets(rng):
    X, Y = _pair(rng, d2=10)
    fit = sparse_prediction(X, Y, alphas=[1e-2], max_targets=3)
    np.testing.assert_array_equal(fit.targets, [0, 4, 9])


@pytest.mark.parametrize("alpha", [0.0, 1e-2])
def test_fit_on_fold_one_equals_sklearn_on_the_swapped_halves(rng, alpha):
    """fit_fold=1 fits on the second half and evaluates on the first: the reference on the
    rows with their halves swapped."""
    X, Y = _pair(rng)
    h = X.shape[0] // 2
    fit = sparse_prediction(X, Y, alphas=[alpha], tol=1e-14, max_iter=100000, fit_fold=1)
    W, mse, r2 = _reference(np.r_[X[h:], X[:h]], np.r_[Y[h:], Y[:h]], alpha)
    np.testing.assert_allclose(fit.weights[0], W, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(fit.r2[0], r2, rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="fit_fold"):
        sparse_prediction(X, Y, fit_fold=2)


def test_heldout_r2_chooses_alpha_on_fold_zero_and_reports_fold_one(rng):
    from convergent.measures.sparse import heldout_r2

    X, Y = _pair(rng, n=200, d1=30)
    alphas = [0.0, 1e-3, 1e-2, 1e-1, 1.0]
    fwd = sparse_prediction(X, Y, alphas=alphas, tol=1e-12, max_iter=100000)
    back = sparse_prediction(X, Y, alphas=alphas, tol=1e-12, max_iter=100000, fit_fold=1)
    h = X.shape[0] // 2
    def pooled(X, Y, a):   # naive pooled R²: 1 − Σ MSE / Σ Var of the held-out fold (fitted-fold units)
        _, mse, r2 = _reference(X, Y, a)
        return 1 - mse.sum() / (mse / (1 - r2)).sum()

    # naive: the backward fits' pooled R² on fold 0, computed by sklearn on the swapped rows
    score = [pooled(np.r_[X[h:], X[:h]], np.r_[Y[h:], Y[:h]], a) for a in alphas]
    best = int(np.argmax(score))
    alpha, r2 = heldout_r2(fwd, back)
    assert alpha == alphas[best]
    np.testing.assert_allclose(r2, pooled(X, Y, alphas[best]), rtol=1e-6)
    # the choice is not the forward fits' best on fold 1 when the two folds disagree
    forward = [pooled(X, Y, a) for a in alphas]
    if int(np.argmax(forward)) != best:
        assert r2 < max(forward)


def test_pooled_r2_is_not_driven_by_a_unit_constant_on_the_held_out_fold(rng):
    """A unit that barely varies on fold 1 makes its own R² hugely negative; the pooled R²,
    the fraction of all targets' variance explained, stays near the others'."""
    from convergent.measures.sparse import pooled_r2

    X, Y = _pair(rng, n=400)
    h = X.shape[0] // 2
    Y = np.c_[Y, np.r_[rng.standard_normal(h), 1e-3 * rng.standard_normal(h)]]
    fit = sparse_prediction(X, Y, alphas=[1e-3], tol=1e-12, max_iter=100000)
    assert fit.r2[0, -1] < -100
    assert pooled_r2(fit)[0] > 0.5 * fit.r2[0, :-1].mean()
