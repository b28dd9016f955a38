"""CCA / SVCCA / PWCCA / Procrustes / linear regression / RSA against naive in-memory versions (tests/measures/naive.py)."""

import numpy as np
import pytest

from convergent.measures import MeasureUnavailable, compute_measures
from convergent.measures.classic import (CentredStats, cca, cca_mean, cca_r2, linreg_r2, linreg_r2_from_grams,
                                         procrustes_angle, procrustes_distance, procrustes_from_grams, pwcca,
                                         rsa_sqeuclid, rsa_sqeuclid_from_grams, svcca, svcca_from_eigs, gram_eig)
from convergent.moments import Moments, moments_from_arrays
from tests.measures import naive

TOL = 1e-8


def _random(rng, n=120, d1=7, d2=5):
    return rng.standard_normal((n, d1)) * rng.uniform(0.5, 3, d1) + 5.0, rng.standard_normal((n, d2)) - 2.0


def _planted(rng, n=150):
    """Y shares three directions with X at three noise levels and has two private units. (Exactly
    shared directions would tie ρ = 1, and PWCCA's weights depend on the basis chosen within tied
    canonical correlations: no implementation can agree on them.)"""
    Z = rng.standard_normal((n, 3))
    X = np.hstack([Z @ rng.standard_normal((3, 3)), rng.standard_normal((n, 3))])
    Y = np.hstack([Z + rng.standard_normal((n, 3)) * [0.05, 0.2, 0.5], rng.standard_normal((n, 2))])
    return X, Y


def _dead(rng, n=100):
    X, Y = _random(rng, n, 6, 4)
    X = np.hstack([X[:, :2], np.full((n, 1), 3.0), X[:, 2:]])   # a constant unit in A
    Y = np.hstack([Y, np.zeros((n, 2))])                          # two zero units in B
    return X, Y


CASES = {
    "random": lambda rng: _random(rng),
    "planted": _planted,
    "dead_units": _dead,
    "unequal_widths": lambda rng: _random(rng, 90, 3, 11),
}


def _both(X, Y):
    """The package's two routes: streamed Moments (float64) and arrays."""
    return [moments_from_arrays(X, Y, chunk_rows=17), (X, Y)]


def _call(f, m, **kw):
    return f(m, **kw) if isinstance(m, Moments) else f(*m, **kw)


@pytest.mark.parametrize("case", sorted(CASES))
def test_classic_measures_match_naive(case):
    X, Y = CASES[case](np.random.default_rng(5))
    Xa, Ya = naive.drop_dead(X), naive.drop_dead(Y)
    rho = naive.cca_rhos(Xa, Ya)
    ang, dist = naive.procrustes(X, Y)
    want = {
        "cca_mean": (cca_mean, {}, rho.mean()),
        "cca_r2": (cca_r2, {}, np.mean(rho ** 2)),
        "svcca99": (svcca, {"variance_kept": 0.99}, naive.svcca(Xa, Ya, 0.99)),
        "svcca50": (svcca, {"variance_kept": 0.5}, naive.svcca(Xa, Ya, 0.5)),
        "pwcca": (pwcca, {}, naive.pwcca_google(Xa, Ya)),
        "procrustes_angle": (procrustes_angle, {}, ang),
        "procrustes_distance": (procrustes_distance, {}, dist),
        "linreg_a_from_b": (linreg_r2, {"direction": "a_from_b"}, naive.linreg_r2(X, Y)),
        "linreg_b_from_a": (linreg_r2, {"direction": "b_from_a"}, naive.linreg_r2(Y, X)),
        "rsa_pearson": (rsa_sqeuclid, {"kind": "pearson"}, naive.rsa_sqeuclid(X, Y, "pearson")),
        "rsa_cosine": (rsa_sqeuclid, {"kind": "cosine"}, naive.rsa_sqeuclid(X, Y, "cosine")),
    }
    for m in _both(X, Y):
        for name, (f, kw, expected) in want.items():
            assert _call(f, m, **kw) == pytest.approx(expected, abs=TOL), (case, name, type(m))


@pytest.mark.parametrize("case", sorted(CASES))
def test_gram_forms_match_naive(case):
    X, Y = CASES[case](np.random.default_rng(6))
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    K, L = Xc @ Xc.T, Yc @ Yc.T
    ang, dist = naive.procrustes(X, Y)
    assert procrustes_from_grams(K, L, "angle") == pytest.approx(ang, abs=TOL)
    assert procrustes_from_grams(K, L, "distance") == pytest.approx(dist, abs=TOL)
    assert linreg_r2_from_grams(K, L) == pytest.approx(naive.linreg_r2(X, Y), abs=TOL)
    assert linreg_r2_from_grams(L, K) == pytest.approx(naive.linreg_r2(Y, X), abs=TOL)
    for kind in ("pearson", "cosine"):
        assert rsa_sqeuclid_from_grams(K, L, kind) == pytest.approx(naive.rsa_sqeuclid(X, Y, kind), abs=TOL)
    for kept in (0.5, 0.99):
        got = svcca_from_eigs(gram_eig(K), gram_eig(L), kept)
        assert got == pytest.approx(naive.svcca(naive.drop_dead(X), naive.drop_dead(Y), kept), abs=TOL)


def test_gram_forms_refuse_uncentred_grams():
    X = np.random.default_rng(3).standard_normal((10, 3)) + 1.0
    K = X @ X.T
    for f in (procrustes_from_grams, rsa_sqeuclid_from_grams, linreg_r2_from_grams):
        with pytest.raises(ValueError, match="not of centred rows"):
            f(K, K)


def test_gram_forms_on_wide_views():
    """The dual form's reason to exist: d > n, where the d × d form is the wrong object."""
    rng = np.random.default_rng(8)
    X, Y = rng.standard_normal((20, 50)), rng.standard_normal((20, 35))
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    K, L = Xc @ Xc.T, Yc @ Yc.T
    ang, dist = naive.procrustes(X, Y)
    assert procrustes_from_grams(K, L) == pytest.approx(ang, abs=TOL)
    assert procrustes_from_grams(K, L) == pytest.approx(procrustes_angle(X, Y), abs=TOL)
    assert rsa_sqeuclid_from_grams(K, L) == pytest.approx(naive.rsa_sqeuclid(X, Y, "pearson"), abs=TOL)
    with pytest.raises(MeasureUnavailable, match="n - 1"):
        linreg_r2_from_grams(K, L)        # 35 units span all 19 centred directions
    # SVCCA keeps few enough components of a low-rank wide layer to be defined from the Grams
    Xl = rng.standard_normal((20, 3)) @ rng.standard_normal((3, 50))
    Yl = Xl[:, :30] @ rng.standard_normal((30, 35)) + 1e-3 * rng.standard_normal((20, 35))
    Kl, Ll = (Xl - Xl.mean(0)) @ (Xl - Xl.mean(0)).T, (Yl - Yl.mean(0)) @ (Yl - Yl.mean(0)).T
    assert svcca_from_eigs(gram_eig(Kl), gram_eig(Ll), 0.99) == pytest.approx(naive.svcca(Xl, Yl, 0.99), abs=TOL)
    with pytest.raises(MeasureUnavailable, match="Theorem 1"):
        svcca_from_eigs(gram_eig(K), gram_eig(L), 0.99)
    with pytest.raises(MeasureUnavailable, match="Theorem 1"):
        cca(X, Y)


def test_planted_known_answers():
    rng = np.random.default_rng(9)
    X = rng.standard_normal((200, 6))
    Q = np.linalg.qr(rng.standard_normal((6, 6)))[0]
    Y = 2.5 * X @ Q + 1.0                                          # rotated, scaled, shifted copy
    for f in (cca_mean, cca_r2, pwcca, svcca):
        assert f(X, Y) == pytest.approx(1.0, abs=1e-10)
    assert procrustes_angle(X, Y) == pytest.approx(0.0, abs=1e-6)   # arccos near 1 is ill-conditioned
    assert procrustes_distance(X, Y) == pytest.approx(0.0, abs=1e-12)
    assert linreg_r2(X, Y) == pytest.approx(1.0, abs=1e-12)
    assert rsa_sqeuclid(X, Y) == pytest.approx(1.0, abs=1e-12)
    # independent data: every measure far from identity
    Z = rng.standard_normal((200, 6))
    assert cca_mean(X, Z) < 0.3 and linreg_r2(X, Z) < 0.1 and procrustes_angle(X, Z) > 1.2
    assert abs(rsa_sqeuclid(X, Z)) < 0.2
    # half of X's dimensions shared: canonical correlations 1, 1, 1 and ~0
    Y2 = np.hstack([X[:, :3], rng.standard_normal((200, 3))])
    r = cca(X, Y2).rho
    assert r[:3] == pytest.approx(1.0, abs=1e-10) and r[3:].max() < 0.4


def test_cca_unavailable_with_reason_and_ridge():
    rng = np.random.default_rng(10)
    X, Y = _random(rng, 40, 25, 20)
    with pytest.raises(MeasureUnavailable, match="d1 \\+ d2 > n - 1"):
        cca_mean(X, Y)
    with pytest.raises(MeasureUnavailable, match="d1 \\+ d2 > n - 1"):
        svcca(X, Y, variance_kept=1.0)
    Xs = np.hstack([X[:, :5], X[:, :1] + X[:, 1:2]])               # a linearly dependent unit
    with pytest.raises(MeasureUnavailable, match="singular"):
        cca_mean(Xs, Y[:, :5])
    for ridge in (0.1, 1.0):
        got = cca(X, Y, ridge=ridge).rho
        assert got == pytest.approx(naive.cca_ridge_rhos(X, Y, ridge), abs=TOL)
        assert pwcca(X, Y, ridge=ridge) > 0
    assert cca(Xs, Y[:, :5], ridge=0.01).rho.max() < 1.0


def test_compute_measures_rows():
    rng = np.random.default_rng(11)
    X, Y = _dead(rng)
    m = moments_from_arrays(X, Y)
    df = compute_measures(m, {"enabled": ["cca", "shape", "linreg", "rsa"], "svcca_variance_kept": [0.5, 0.99]})
    names = set(df.measure)
    assert {"cca_mean", "cca_r2", "svcca", "pwcca", "procrustes_angle", "procrustes_distance",
            "linreg_r2_a_from_b", "linreg_r2_b_from_a", "rsa_sqeuclid_pearson", "rsa_sqeuclid_cosine"} <= names
    assert df.loc[df.measure == "dead_units_a", "value"].item() == 1
    assert df.loc[df.measure == "dead_units_b", "value"].item() == 2
    assert sorted(df.loc[df.measure == "svcca", "parameter_value"]) == [0.5, 0.99]
    assert (df["note"] == "").all() and df["value"].notna().all()
    # too few samples: CCA rows say why, the others still come out
    Xw, Yw = _random(rng, 12, 8, 6)
    df = compute_measures(moments_from_arrays(Xw, Yw), {"enabled": ["cca", "shape"]})
    cc = df[df.measure.isin(["cca_mean", "cca_r2", "svcca", "pwcca"])]
    assert cc["value"].isna().all() and cc["note"].str.contains("more samples than units").all()
    assert df.loc[df.measure == "procrustes_angle", "value"].notna().all()
    df = compute_measures(moments_from_arrays(Xw, Yw), {"enabled": ["cca"], "cca_ridge": 0.5})
    assert df.loc[df.measure == "cca_mean", "value"].notna().all()
    assert (df.loc[df.measure == "cca_mean", "parameter"] == "ridge").all()


def test_centred_stats_equal_moments():
    rng = np.random.default_rng(12)
    X, Y = _random(rng)
    s, m = CentredStats.from_centred(X - X.mean(0), Y - Y.mean(0)), moments_from_arrays(X, Y)
    assert s.cxy == pytest.approx(m.cxy, abs=1e-9)
    for k, v in m.centred_debias_terms().items():
        assert s.centred_debias_terms()[k] == pytest.approx(v, rel=1e-10)


def test_mixed_precision_moments_close_and_singularity_still_detected():
    """float32 block products: values to ~1e-5, and a dependent unit still reads as singular
    (the tolerance follows the moments' precision)."""
    rng = np.random.default_rng(13)
    X, Y = _planted(rng, 400)
    m64, m32 = moments_from_arrays(X, Y), moments_from_arrays(X, Y, precision="mixed")
    for f in (cca_mean, pwcca, svcca, procrustes_angle, linreg_r2, rsa_sqeuclid):
        assert f(m32) == pytest.approx(f(m64), abs=1e-4), f.__name__
    Xs = np.hstack([X, X[:, :1] - 2 * X[:, 1:2]])
    with pytest.raises(MeasureUnavailable, match="singular"):
        cca_mean(moments_from_arrays(Xs, Y, precision="mixed"))
