import numpy as np
import pytest
from scipy.stats import ortho_group

import naive
from convergent.measures import MeasureUnavailable, correlation_matrix, hungarian_match, semi_match
from convergent.measures.matching import cross_validated_match, semi_equals_hungarian, sorted_curve
from convergent.moments import moments_from_arrays


def test_correlation_vs_naive(rng):
    X, Y = rng.standard_normal((50, 4)), rng.standard_normal((50, 3))
    Y[:, 0] += 2 * X[:, 1]
    c = correlation_matrix(X, Y)
    np.testing.assert_allclose(c.r, naive.corr(X, Y), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(correlation_matrix(moments_from_arrays(X, Y)).r, c.r, rtol=0, atol=0)


def test_hungarian_vs_bruteforce(rng):
    for _ in range(5):
        X = rng.standard_normal((40, 5))
        Y = X @ rng.standard_normal((5, 5)) + rng.standard_normal((40, 5))
        m = hungarian_match(X, Y)
        perm = naive.best_assignment_bruteforce(naive.corr(X, Y))
        np.testing.assert_array_equal(m.b[np.argsort(m.a)], perm)


def test_planted_permutation_recovered(rng):
    X = rng.standard_normal((200, 8))
    P = rng.permutation(8)
    Y = X[:, P] * rng.uniform(0.5, 2, 8) + 3     # permutation, per-unit positive scale, shift
    m = hungarian_match(X, Y)
    np.testing.assert_array_equal(m.b[np.argsort(m.a)], np.argsort(P))
    np.testing.assert_allclose(m.r, 1.0, atol=1e-12)
    s = semi_match(X, Y)
    assert semi_equals_hungarian(m, s) == 1.0


def test_rotation_breaks_matching(rng):
    X = rng.standard_normal((500, 8))
    Y = X @ ortho_group.rvs(8, random_state=3)
    assert hungarian_match(X, Y).mean < 0.8      # matching is not rotation invariant


def test_dead_units_excluded(rng):
    X = rng.standard_normal((100, 5))
    Y = X[:, [2, 0, 1, 4, 3]].copy()
    X[:, 1] = 0.0
    Y[:, 3] = 5.0           # constant, not zero: dead too
    m = hungarian_match(X, Y)
    assert (m.dead.n_a, m.dead.n_b) == (1, 1)
    assert 1 not in m.a and 3 not in m.b and len(m.a) == 4
    assert np.all(np.isfinite(m.r))
    with pytest.raises(MeasureUnavailable):
        hungarian_match(np.zeros((10, 3)), rng.standard_normal((10, 3)))


def test_cross_validated(rng):
    X = rng.standard_normal((200, 6))
    Y = X[:, ::-1] + 0.1 * rng.standard_normal((200, 6))
    m = cross_validated_match(X, Y)
    np.testing.assert_array_equal(m.b, 5 - m.a)
    ref = naive.corr(X[100:], Y[100:])[m.a, m.b]
    np.testing.assert_allclose(m.r, ref, rtol=1e-10)


def test_sorted_curve():
    np.testing.assert_allclose(sorted_curve(np.array([0.1, 0.9, 0.5]), np.array([0, 0.5, 1])), [0.9, 0.5, 0.1])
