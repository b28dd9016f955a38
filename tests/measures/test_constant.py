"""Constant and all-dead representations: every measure is unavailable with the reason.

A dead network (lr too high: every ReLU unit off) gives layers that are constant over the
samples. Any number comparing such a layer is an artefact -- e.g. mutual k-NN used to
report 1.0 for two constant layers because ties were broken by row index.
"""

import itertools

import numpy as np
import pytest

from convergent.measures import DEFAULT_PARAMS, MeasureUnavailable, compute_measures, mutual_knn
from convergent.measures.kernels import knn_weights
from convergent.moments import moments_from_arrays

#: rows that describe the data (counts), not a comparison: they stay numbers
DESCRIPTIVE = {"dead_units_a", "dead_units_b", "subsample_rows"}
N = 120


def _measures(X, Y, rng):
    m = moments_from_arrays(X, Y, rng.integers(0, 3, N), subsample_size=50, minibatch_size=32)
    params = {"lasso_alphas": [0.0, 1e-3], "spectral_k": [2], "minimal_max_neurons": 3}
    return compute_measures({"positions": m, "flatten": m}, params)


CASES = {
    "both constant": (lambda rng: np.full((N, 5), 0.37), lambda rng: np.full((N, 4), 1.3), "AB"),
    "both all-dead ReLU (zeros)": (lambda rng: np.zeros((N, 5)), lambda rng: np.zeros((N, 4)), "AB"),
    "A constant, B alive": (lambda rng: np.full((N, 5), 2.0), lambda rng: rng.standard_normal((N, 4)), "A"),
    "A alive, B all-dead": (lambda rng: np.maximum(rng.standard_normal((N, 5)), 0), lambda rng: np.zeros((N, 3)), "B"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_measure_of_a_constant_representation_is_unavailable(rng, case):
    make_x, make_y, const = CASES[case]
    df = _measures(make_x(rng), make_y(rng), rng)
    # every family ran: the test covers whatever compute_measures computes
    assert set(df["view"]) == {"positions", "flatten"}
    assert {"cka_linear", "hungarian_mean_corr", "mutual_knn_subsample", "cka_rbf_subsample", "sparse_val_r2",
            "spectral_mixing", "subspace_similarity", "alignment_top_c_a", "alignment_top_c_b"} <= set(df.measure)
    for _, row in df.iterrows():
        name = row["measure"]
        if name in DESCRIPTIVE:
            assert np.isfinite(row["value"]), row.to_dict()
            continue
        # per-network rows (alignment of A or of B) depend on that network only
        own = name[-1].upper() if name.startswith("alignment_") else "AB"
        if set(own) & set(const):
            assert np.isnan(row["value"]), row.to_dict()
            assert row["note"].startswith("unavailable:"), row.to_dict()
            assert "constant" in row["note"] or "dead" in row["note"] or "alive" in row["note"], row.to_dict()
        elif name.startswith("alignment_top_c"):
            assert np.isfinite(row["value"]), row.to_dict()
    dead = df[df.measure == f"dead_units_{const[0].lower()}"]["value"]
    assert (dead > 0).all()


def test_mutual_knn_constant_layers_unavailable_not_one():
    """The tie-break artefact: two constant layers used to agree 'perfectly' (1.0)."""
    with pytest.raises(MeasureUnavailable, match="constant"):
        mutual_knn(np.full((30, 3), 0.5), np.zeros((30, 2)), k=5)
    rng = np.random.default_rng(1)
    with pytest.raises(MeasureUnavailable, match="representation B is constant"):
        mutual_knn(rng.standard_normal((30, 3)), np.full((30, 2), 7.0), k=5)


def _naive_tied_mutual_knn(X, Y, k):
    """Expected shared-neighbour fraction by enumerating every tie-breaking of every row (independent code)."""
    def neighbour_sets(A, i):
        d = ((A - A[i]) ** 2).sum(1)
        others = [j for j in range(len(A)) if j != i]
        kth = sorted(d[j] for j in others)[k - 1]
        closer = [j for j in others if d[j] < kth - 1e-9]
        tied = [j for j in others if abs(d[j] - kth) <= 1e-9]
        return [set(closer) | set(c) for c in itertools.combinations(tied, k - len(closer))]
    total = 0.0
    for i in range(len(X)):
        sa, sb = neighbour_sets(X, i), neighbour_sets(Y, i)
        total += np.mean([len(a & b) for a in sa for b in sb]) / k
    return total / len(X)


def test_mutual_knn_with_ties_is_the_tie_breaking_expectation_and_order_free():
    rng = np.random.default_rng(3)
    # few distinct points, many duplicates: the partly-dead ReLU situation
    X = rng.integers(0, 3, size=(9, 2)).astype(float)
    Y = rng.integers(0, 2, size=(9, 2)).astype(float)
    Y[0] += 5.0   # Y is not constant
    for k in (1, 2, 4):
        assert mutual_knn(X, Y, k=k) == pytest.approx(_naive_tied_mutual_knn(X, Y, k), abs=1e-12)
        perm = rng.permutation(len(X))
        assert mutual_knn(X[perm], Y[perm], k=k) == pytest.approx(mutual_knn(X, Y, k=k), abs=1e-12)


def test_knn_weights_rows_sum_to_k_and_are_indicators_without_ties():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((20, 3))
    Xc = X - X.mean(0)
    W = knn_weights(Xc @ Xc.T, 4)
    np.testing.assert_allclose(W.sum(1), 4.0)
    assert set(np.unique(W)) <= {0.0, 1.0}
    assert np.all(np.diag(W) == 0)


def test_default_params_enable_every_family_tested_here():
    # a new family added to compute_measures is enabled by default, so the constant-input test covers it
    assert set(DEFAULT_PARAMS["enabled"]) >= {"cka", "matching", "kernels", "sparse", "spectral", "subspace",
                                              "alignment"}
