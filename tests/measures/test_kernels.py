import numpy as np
import pytest
from scipy.stats import ortho_group

import naive
from convergent.measures import MeasureUnavailable, linear_cka_subsample, mutual_knn, rbf_cka
from convergent.moments import moments_from_arrays


def _pair(rng, n=60):
    X = rng.standard_normal((n, 5)) + 3
    Y = np.tanh(X @ rng.standard_normal((5, 4))) + 0.2 * rng.standard_normal((n, 4))
    return X, Y


@pytest.mark.parametrize("t", [0.2, 0.4, 0.8])
def test_rbf_cka_vs_naive(rng, t):
    X, Y = _pair(rng)
    assert rbf_cka(X, Y, sigma_scale=t) == pytest.approx(naive.rbf_cka(X, Y, t), rel=1e-9)


def test_subsample_measures_from_moments(rng):
    X, Y = _pair(rng, n=150)
    m = moments_from_arrays(X, Y, subsample_size=40, subsample_seed=7, chunk_rows=33)
    idx = m.sub_idx
    Xs, Ys = X[idx], Y[idx]
    assert rbf_cka(m, sigma_scale=0.4) == pytest.approx(naive.rbf_cka(Xs, Ys, 0.4), rel=1e-9)
    assert mutual_knn(m, k=5) == pytest.approx(naive.mutual_knn(Xs, Ys, 5), abs=1e-12)
    assert linear_cka_subsample(m) == pytest.approx(naive.cka_linear(naive.centre(Xs), naive.centre(Ys)), rel=1e-9)


def test_mutual_knn_vs_naive(rng):
    X, Y = _pair(rng)
    for k in (1, 3, 10):
        assert mutual_knn(X, Y, k=k) == pytest.approx(naive.mutual_knn(X, Y, k), abs=1e-12)


def test_self_pair(rng):
    X, _ = _pair(rng)
    assert rbf_cka(X, X) == pytest.approx(1.0, abs=1e-12)
    assert mutual_knn(X, X, k=5) == 1.0
    assert linear_cka_subsample(X, X) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("name,invariant", [("rotation", True), ("isotropic_scaling", True), ("translation", True),
                                            ("anisotropic_scaling", False)])
def test_kernel_invariances(rng, name, invariant):
    X, Y = _pair(rng)
    Q = ortho_group.rvs(4, random_state=0)
    f = {"rotation": lambda A: A @ Q, "isotropic_scaling": lambda A: 3.0 * A, "translation": lambda A: A - 10,
         "anisotropic_scaling": lambda A: A * np.array([0.05, 1, 8, 20])}[name]
    for fn in (lambda A, B: rbf_cka(A, B, sigma_scale=0.4), lambda A, B: mutual_knn(A, B, k=5)):
        a, b = fn(X, Y), fn(X, f(Y))
        if invariant:
            assert b == pytest.approx(a, rel=1e-9, abs=1e-12)
        else:
            assert abs(a - b) > 1e-3


def test_no_subsample_unavailable(rng):
    X, Y = _pair(rng)
    with pytest.raises(MeasureUnavailable, match="no subsample"):
        rbf_cka(moments_from_arrays(X, Y))
    with pytest.raises(MeasureUnavailable):
        mutual_knn(X, Y, k=len(X))
