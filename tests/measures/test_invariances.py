"""Declared invariances, tested both ways (in the style of wrongu/repsim's invariance table).

For each measure: transforms of Y under which it MUST stay the same, and transforms
under which it must NOT (a measure that ignores everything would pass the first half).
"""

import numpy as np
import pytest
from scipy.stats import ortho_group

from convergent.measures import (alignment_curve, cca_mean, cca_r2, hungarian_match, linear_cka, linreg_r2, max_match,
                                 mutual_knn, procrustes_angle, procrustes_distance, pwcca, rbf_cka, rsa_sqeuclid,
                                 semi_match, sparse_prediction, spectral_groups, svcca)

N, D = 300, 6


def _data():
    rng = np.random.default_rng(7)
    Z = rng.standard_normal((N, 3))
    # three shared directions (in both spans) plus private units
    X = np.hstack([Z @ rng.standard_normal((3, 3)), np.maximum(rng.standard_normal((N, D - 3)), 0)]) + 0.1
    Y = np.hstack([Z @ rng.standard_normal((3, 3)), rng.standard_normal((N, D - 3))]) + 0.01 * rng.standard_normal((N, D))
    return X, Y, rng.integers(0, 3, N)


_Q = ortho_group.rvs(D, random_state=11)
_A = np.random.default_rng(3).standard_normal((D, D)) + 2 * np.eye(D)
_PERM = np.array([3, 0, 5, 1, 4, 2])
_SCALES = np.linspace(0.2, 5.0, D)

_ALL = {"permutation", "rotation", "isotropic_scaling", "per_unit_scaling", "translation", "invertible_linear"}

TRANSFORMS = {
    "permutation": lambda Y: Y[:, _PERM],
    "rotation": lambda Y: Y @ _Q,
    "isotropic_scaling": lambda Y: 3.7 * Y,
    "per_unit_scaling": lambda Y: Y * _SCALES,
    "translation": lambda Y: Y + 4.0,
    "invertible_linear": lambda Y: Y @ _A,
}

MEASURES = {
    "cka_linear": lambda X, Y, t: linear_cka(X, Y),
    "cka_linear_debiased": lambda X, Y, t: linear_cka(X, Y, debiased=True),
    "cka_rbf": lambda X, Y, t: rbf_cka(X, Y, sigma_scale=0.4),
    "mutual_knn": lambda X, Y, t: mutual_knn(X, Y, k=10),
    "hungarian_mean_corr": lambda X, Y, t: hungarian_match(X, Y).mean,
    "semi_mean_corr": lambda X, Y, t: semi_match(X, Y).mean,
    "sparse_r2_ols": lambda X, Y, t: float(np.mean(sparse_prediction(Y, X, alphas=[0.0]).r2)),   # predicts X from Y
    "spectral_mixing": lambda X, Y, t: spectral_groups(X, Y, k=3).mixing,
    "subspace_similarity": lambda X, Y, t: max_match(X, Y, eps=0.3).similarity,
    "alignment_top3": lambda X, Y, t: alignment_curve(Y, t).top(3),
    "cca_mean": lambda X, Y, t: cca_mean(X, Y),
    "cca_r2": lambda X, Y, t: cca_r2(X, Y),
    "pwcca": lambda X, Y, t: pwcca(X, Y[:, :5]),   # Y the smaller side: its weights are the ones to move
    "svcca_full": lambda X, Y, t: svcca(X, Y, variance_kept=1.0),
    "svcca_99": lambda X, Y, t: svcca(X, Y, variance_kept=0.99),
    "procrustes_angle": lambda X, Y, t: procrustes_angle(X, Y),
    "procrustes_distance": lambda X, Y, t: procrustes_distance(X, Y),
    "linreg_r2_a_from_b": lambda X, Y, t: linreg_r2(X, Y, direction="a_from_b"),
    "linreg_r2_b_from_a": lambda X, Y, t: linreg_r2(X, Y, direction="b_from_a"),
    "rsa_sqeuclid_pearson": lambda X, Y, t: rsa_sqeuclid(X, Y, kind="pearson"),
    "rsa_sqeuclid_cosine": lambda X, Y, t: rsa_sqeuclid(X, Y, kind="cosine"),
}

# measure -> (must be invariant to, must NOT be invariant to)
TABLE = {
    "cka_linear": ({"permutation", "rotation", "isotropic_scaling", "translation"},
                   {"per_unit_scaling", "invertible_linear"}),
    "cka_linear_debiased": ({"permutation", "rotation", "isotropic_scaling", "translation"},
                            {"per_unit_scaling", "invertible_linear"}),
    "cka_rbf": ({"permutation", "rotation", "isotropic_scaling", "translation"},
                {"per_unit_scaling", "invertible_linear"}),
    "mutual_knn": ({"permutation", "rotation", "isotropic_scaling", "translation"}, {"per_unit_scaling"}),
    "hungarian_mean_corr": ({"permutation", "isotropic_scaling", "per_unit_scaling", "translation"},
                            {"rotation", "invertible_linear"}),
    "semi_mean_corr": ({"permutation", "isotropic_scaling", "per_unit_scaling", "translation"},
                       {"rotation", "invertible_linear"}),
    # least squares from Y: any invertible map of the predictors leaves the fit unchanged
    "sparse_r2_ols": ({"permutation", "rotation", "isotropic_scaling", "per_unit_scaling", "translation",
                       "invertible_linear"}, set()),
    "spectral_mixing": ({"permutation", "isotropic_scaling", "per_unit_scaling", "translation"}, {"rotation"}),
    # uncentred, and a map mixing shared with private neurons moves them out of the shared span
    # (invariance to invertible maps *within* a matched span: test_subspace.py)
    "subspace_similarity": ({"permutation", "isotropic_scaling", "per_unit_scaling"},
                            {"translation", "rotation", "invertible_linear"}),
    "alignment_top3": ({"permutation", "rotation"}, {"isotropic_scaling", "translation"}),
    # CCA: any invertible linear map of either side (and translation: centred)
    "cca_mean": (_ALL, set()),
    "cca_r2": (_ALL, set()),
    "pwcca": ({"translation", "isotropic_scaling"}, set()),   # maps of the weighted side: see below
    # SVCCA with every direction kept is plain CCA; a cutoff makes it depend on the PCA, hence on the map
    "svcca_full": (_ALL, set()),
    "svcca_99": ({"permutation", "rotation", "isotropic_scaling", "translation"}, {"per_unit_scaling"}),
    "procrustes_angle": ({"permutation", "rotation", "isotropic_scaling", "translation"},
                         {"per_unit_scaling", "invertible_linear"}),
    "procrustes_distance": ({"permutation", "rotation", "isotropic_scaling", "translation"},
                            {"per_unit_scaling", "invertible_linear"}),
    # the span of the predictor is all that matters; the target's norm is not invariant to linear maps
    "linreg_r2_a_from_b": (_ALL, set()),
    "linreg_r2_b_from_a": ({"permutation", "rotation", "isotropic_scaling", "translation"},
                           {"per_unit_scaling", "invertible_linear"}),
    "rsa_sqeuclid_pearson": ({"permutation", "rotation", "isotropic_scaling", "translation"},
                             {"per_unit_scaling", "invertible_linear"}),
    "rsa_sqeuclid_cosine": ({"permutation", "rotation", "isotropic_scaling", "translation"},
                            {"per_unit_scaling", "invertible_linear"}),
}

CASES = [(m, t, True) for m, (inv, _) in TABLE.items() for t in sorted(inv)] + \
        [(m, t, False) for m, (_, notinv) in TABLE.items() for t in sorted(notinv)]


@pytest.mark.parametrize("measure,transform,invariant", CASES, ids=[f"{m}-{t}-{'inv' if i else 'not'}"
                                                                     for m, t, i in CASES])
def test_invariance_table(measure, transform, invariant):
    X, Y, t = _data()
    f = MEASURES[measure]
    a, b = f(X, Y, t), f(X, TRANSFORMS[transform](Y), t)
    if invariant:
        assert b == pytest.approx(a, rel=1e-7, abs=1e-9)
    else:
        assert abs(a - b) > 1e-3, f"{measure} should change under {transform}: {a} vs {b}"


def test_pwcca_weights_move_with_a_linear_map_of_the_weighted_side():
    """PWCCA's ρ are CCA's (invariant), but its weights are projections onto the raw units of the
    smaller side, so an invertible map of that side changes it while one of the other side does not."""
    X, Y, _ = _data()
    Ys = Y[:, :5]
    base = pwcca(X, Ys)
    A5 = _A[:5, :5]
    assert pwcca(X @ _A, Ys) == pytest.approx(base, rel=1e-7)       # X is the larger side: only ρ enter
    assert abs(pwcca(X, Ys @ A5) - base) > 1e-3
    assert abs(pwcca(X, Ys * _SCALES[:5]) - base) > 1e-3
