import numpy as np
import pytest
from scipy.stats import ortho_group

import naive
from convergent.measures import max_match, minimal_matches
from convergent.measures.subspace import joint_gram, rel_dist_to_span


def test_rel_dist_vs_lstsq(rng):
    Z = np.maximum(rng.standard_normal((80, 9)), 0)
    jg = joint_gram(Z[:, :5], Z[:, 5:])
    for t, span in [(0, [5, 6, 7]), (8, [0, 1, 2, 3, 4]), (3, [])]:
        got = rel_dist_to_span(jg.C, [t], span)[0]
        assert got == pytest.approx(naive.rel_dist_to_span(Z[:, t], Z[:, span]), rel=1e-9, abs=1e-12)


def test_rel_dist_rank_deficient_span(rng):
    Z = rng.standard_normal((50, 4))
    S = np.hstack([Z[:, :2], Z[:, :1] * 3, Z[:, :2] @ [[1.0], [2.0]]])   # rank 2, four columns
    jg = joint_gram(np.hstack([S, Z[:, 2:]]), Z[:, :1])
    got = rel_dist_to_span(jg.C, [4, 5, 6], [0, 1, 2, 3])
    ref = [naive.rel_dist_to_span(v, S) for v in (Z[:, 2], Z[:, 3], Z[:, 0])]
    np.testing.assert_allclose(got, ref, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("eps", [0.15, 0.3, 0.5])
def test_max_match_vs_naive(rng, eps):
    for _ in range(3):
        S = rng.standard_normal((60, 3))
        X = np.maximum(np.hstack([S @ rng.standard_normal((3, 4)), rng.standard_normal((60, 3))]), 0)
        Y = np.maximum(np.hstack([S @ rng.standard_normal((3, 3)), rng.standard_normal((60, 2))]), 0)
        got = max_match(X, Y, eps=eps)
        xs, ys = naive.max_match(X, Y, eps)
        assert got.a.tolist() == xs and got.b.tolist() == ys
        assert got.similarity == pytest.approx((len(xs) + len(ys)) / 12)


def test_planted_shared_subspace_found_exactly(rng):
    n, k = 200, 4
    S = rng.standard_normal((n, k))
    X = np.hstack([S @ rng.standard_normal((k, 6)), rng.standard_normal((n, 5))])
    Y = np.hstack([rng.standard_normal((n, 3)), S @ rng.standard_normal((k, 5)), rng.standard_normal((n, 2))])
    m = max_match(X, Y, eps=0.2)
    assert m.a.tolist() == list(range(6)) and m.b.tolist() == list(range(3, 8))
    assert m.similarity == pytest.approx(11 / 21)


def test_invariance_to_invertible_maps_within_span(rng):
    n = 150
    S = rng.standard_normal((n, 3))
    X = np.hstack([S, rng.standard_normal((n, 2))])
    Y = np.hstack([S @ rng.standard_normal((3, 3)), rng.standard_normal((n, 2))])
    base = max_match(X, Y, eps=0.1)
    M = rng.standard_normal((3, 3)) + 3 * np.eye(3)              # invertible, within the shared span
    Y2 = Y.copy()
    Y2[:, :3] = Y[:, :3] @ M
    assert max_match(X, Y2, eps=0.1).b.tolist() == base.b.tolist() == [0, 1, 2]
    # Y = X A for A invertible on all of X: everything matches
    assert max_match(X, X @ (rng.standard_normal((5, 5)) + 3 * np.eye(5)), eps=0.01).similarity == 1.0
    # a rotation that mixes shared and private units destroys the match
    Q = ortho_group.rvs(5, random_state=4)
    assert max_match(X, Y @ Q, eps=0.1).similarity < base.similarity


def test_self_pair_and_zero_neurons(rng):
    X = np.maximum(rng.standard_normal((40, 5)), 0)
    assert max_match(X, X, eps=1e-6).similarity == 1.0   # Gram-based distances resolve ~1e-8
    X[:, 1] = 0.0
    m = max_match(X, X, eps=0.01)
    assert 1 not in m.a and m.similarity == pytest.approx(8 / 10)    # zero neurons unmatched, still counted


def test_minimal_matches_vs_naive(rng):
    S = rng.standard_normal((50, 2))
    X = np.hstack([S[:, :1] * [1, 2], S[:, 1:] , rng.standard_normal((50, 1))])
    Y = np.hstack([S[:, :1] * [-1.0], S @ [[1.0], [1.0]], S[:, 1:] * 3])
    mm = minimal_matches(X, Y, eps=0.05, max_neurons=100)
    for v, (a, b) in zip(mm.neurons, mm.matches):
        ref = naive.minimal_match(X, Y, 0.05, int(v))
        assert sorted(a.tolist() + [X.shape[1] + j for j in b.tolist()]) == ref
    assert mm.n_in_max == 6 and mm.sizes.min() == 2
