import numpy as np
import pandas as pd
import pytest

from convergent.measures import COLUMNS, compute_measures
from convergent.moments import Moments


def _views(rng):
    X = rng.standard_normal((300, 6))
    Y = X @ rng.standard_normal((6, 7))
    Y[:, 2] = 0.0
    m = Moments.from_arrays(X, Y, rng.integers(0, 3, 300), minibatch_size=32)
    return {"positions": m, "flatten": m}


def test_columns_and_rows(rng):
    df = compute_measures(_views(rng), {"enabled": ["cka", "matching"]})
    assert list(df.columns) == COLUMNS
    got = set(df["measure"])
    assert {"cka_linear", "hungarian_mean_corr", "dead_units_a", "dead_units_b"} <= got
    assert df.loc[df.measure == "dead_units_b", "value"].tolist() == [1.0, 1.0]
    assert df["value"].notna().all() and (df["note"] == "").all()
    plain = df[df.parameter == ""]
    assert plain["parameter_value"].isna().all()


def test_self_pair_ceiling(rng):
    X = rng.standard_normal((300, 6))
    df = compute_measures(Moments.from_arrays(X, X, rng.integers(0, 3, 300), subsample_size=50,
                                              minibatch_size=32), {"lasso_alphas": [0.0, 1e-4], "spectral_k": [2, 4]})
    noted = df[df.note != ""]
    assert set(noted.measure) <= {"alignment_k_a", "alignment_k_b", "minimal_match_neurons"}, noted
    ones = df[df.measure.isin(["cka_linear", "cka_linear_debiased", "cka_minibatch", "hungarian_mean_corr",
                               "semi_mean_corr", "semi_equals_hungarian", "hungarian_mean_corr_cv",
                               "semi_mean_corr_cv", "cka_linear_subsample", "cka_rbf_subsample",
                               "mutual_knn_subsample", "subspace_similarity", "spectral_mixing"])]
    assert len(ones) == 20
    assert df[df.measure == "minimal_match_size_max"]["value"].tolist() == [2.0]   # {v in A, its copy in B}
    np.testing.assert_allclose(ones["value"], 1.0, atol=1e-12)
    r2 = df[(df.measure == "sparse_val_r2") & (df.parameter_value == 0)]["value"]
    np.testing.assert_allclose(r2, 1.0, atol=1e-10)


def test_unavailable_gives_note_not_silent_nan(rng):
    X = rng.standard_normal((50, 4))
    m = Moments.from_arrays(X, np.zeros((50, 3)))     # B entirely dead, no subsample
    df = compute_measures({"positions": m, "flatten": m}, {})
    bad = df[df.value.isna()]
    assert len(bad) and bad["note"].str.startswith("unavailable").all()
    assert {"cka_linear", "hungarian_mean_corr", "sparse_val_r2", "spectral_mixing", "cka_rbf_subsample"} <= set(
        bad.measure)
    # the subspace match needs no variance: B's constant zero vectors are simply unmatched
    assert (df[df.measure == "subspace_similarity"]["value"] == 0).all()


def test_missing_view_and_bad_params(rng):
    v = _views(rng)
    del v["flatten"]
    df = compute_measures(v, {"enabled": ["cka"]})
    assert df["note"].str.contains("view 'flatten' not in").any()
    with pytest.raises(ValueError, match="unknown measures parameter"):
        compute_measures(v, {"nonsense": 1})
    with pytest.raises(ValueError, match="unknown measure families"):
        compute_measures(v, {"enabled": ["nope"]})
