import numpy as np
import pytest
from scipy.stats import ortho_group

import naive
from convergent.measures import MeasureUnavailable, linear_cka, minibatch_cka
from convergent.moments import moments_from_arrays


def _pair(rng, n=60, d1=6, d2=5, noise=0.5):
    X = rng.standard_normal((n, d1)) * rng.uniform(0.5, 3, d1) + rng.standard_normal(d1) * 4
    Y = X @ rng.standard_normal((d1, d2)) + noise * rng.standard_normal((n, d2))
    return X, Y


def test_linear_cka_vs_naive(rng):
    X, Y = _pair(rng)
    ref = naive.cka_linear(naive.centre(X), naive.centre(Y))
    assert linear_cka(X, Y) == pytest.approx(ref, rel=1e-10)
    assert linear_cka(moments_from_arrays(X, Y)) == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("centred", [True, False])
def test_debiased_cka_vs_explicit_song(rng, centred):
    # The Song estimator with linear kernels is translation invariant, so the explicit
    # n × n version on uncentred rows must agree too.
    X, Y = _pair(rng, n=40)
    Xr, Yr = (naive.centre(X), naive.centre(Y)) if centred else (X, Y)
    ref = naive.cka_debiased(Xr, Yr)
    assert linear_cka(X, Y, debiased=True) == pytest.approx(ref, rel=1e-9)


def test_debiased_cka_can_be_negative(rng):
    # independent noise, few samples: the unbiased estimate scatters around 0
    vals = [linear_cka(rng.standard_normal((12, 3)), rng.standard_normal((12, 3)), debiased=True) for _ in range(20)]
    refs = []
    rng2 = np.random.default_rng(12345)
    assert min(vals) < 0, "never clamped"
    for _ in range(3):
        X, Y = rng2.standard_normal((12, 3)), rng2.standard_normal((12, 3))
        refs.append((linear_cka(X, Y, debiased=True), naive.cka_debiased(X, Y)))
    np.testing.assert_allclose(*np.array(refs).T, rtol=1e-9)


def test_minibatch_cka_vs_naive(rng):
    X, Y = _pair(rng, n=70)
    m = moments_from_arrays(X, Y, minibatch_size=16, fold_split=32)
    # batches restart at the fold boundary: fold 0 = rows 0..31 (2 batches), fold 1 = rows 32..69 (2 batches)
    ref_rows = np.r_[0:32, 32:64]
    ref = naive.cka_minibatch(X[ref_rows], Y[ref_rows], 16)
    assert minibatch_cka(m) == pytest.approx(ref, rel=1e-10)
    assert m.mb_count == 4 and m.mb_dropped == 6


def test_self_pair_is_one(rng):
    X, _ = _pair(rng)
    assert linear_cka(X, X) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(X, X, debiased=True) == pytest.approx(1.0, abs=1e-12)
    assert minibatch_cka(moments_from_arrays(X, X, minibatch_size=10)) == pytest.approx(1.0, abs=1e-12)


# invariance table (repsim style): transform of Y -> must CKA stay equal?
def _transforms(rng, d):
    Q = ortho_group.rvs(d, random_state=1)
    A = rng.standard_normal((d, d)) + np.diag(np.linspace(0.1, 5, d))   # generic invertible map
    return {
        "rotation": (lambda Y: Y @ Q, True),
        "isotropic_scaling": (lambda Y: 7.5 * Y, True),
        "translation": (lambda Y: Y + 100.0, True),
        "permutation": (lambda Y: Y[:, ::-1], True),
        "invertible_linear": (lambda Y: Y @ A, False),
        "anisotropic_scaling": (lambda Y: Y * np.linspace(0.1, 10, d), False),
    }


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("name", ["rotation", "isotropic_scaling", "translation", "permutation",
                                  "invertible_linear", "anisotropic_scaling"])
def test_cka_invariances(rng, name, debiased):
    X, Y = _pair(rng, n=80)
    f, invariant = _transforms(rng, Y.shape[1])[name]
    a, b = linear_cka(X, Y, debiased=debiased), linear_cka(X, f(Y), debiased=debiased)
    if invariant:
        assert b == pytest.approx(a, rel=1e-9)
    else:
        assert abs(b - a) > 1e-3


def test_constant_representation_unavailable(rng):
    X, _ = _pair(rng)
    with pytest.raises(MeasureUnavailable):
        linear_cka(X, np.ones((X.shape[0], 3)))
    with pytest.raises(MeasureUnavailable):
        linear_cka(X, np.ones((X.shape[0], 3)), debiased=True)


@pytest.mark.parametrize("chunk", [None, 13, 64])
def test_minibatch_subset_of_batches(rng, chunk):
    X, Y = _pair(rng, n=200)
    m = moments_from_arrays(X, Y, minibatch_size=8, minibatch_max=5, chunk_rows=chunk)
    # 12 complete batches per fold of 100 rows (4 rows dropped); stride 12 // 5 = 2 -> batches 0, 2, 4, 6, 8
    rows = np.concatenate([np.arange(f * 100 + k * 8, f * 100 + k * 8 + 8) for f in (0, 1) for k in (0, 2, 4, 6, 8)])
    assert m.mb_count == 10 and m.mb_dropped == 8
    assert minibatch_cka(m) == pytest.approx(naive.cka_minibatch(X[rows], Y[rows], 8), rel=1e-10)
