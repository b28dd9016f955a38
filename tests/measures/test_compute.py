import numpy as np
import pytest

from convergent.measures import COLUMNS, compute_measures
from convergent.moments import moments_from_arrays


def _views(rng):
    X = rng.standard_normal((300, 6))
    Y = X @ rng.standard_normal((6, 7))
    Y[:, 2] = 0.0
    m = moments_from_arrays(X, Y, rng.integers(0, 3, 300), minibatch_size=32)
    return {"positions": m, "flatten": m}


def test_columns_and_rows(rng):
    df = compute_measures(_views(rng), {"enabled": ["cka", "matching"]})
    assert list(df.columns) == COLUMNS
    got = set(df["measure"])
    assert {"cka_linear", "hungarian_mean_corr", "dead_units_a", "dead_units_b"} <= got
    assert df.loc[df.measure == "dead_units_b", "value"].tolist() == [1.0, 1.0]
    assert df["value"].notna().all() and not df["note"].str.startswith("unavailable").any()
    assert df.loc[df.measure == "cka_minibatch", "note"].str.startswith("subsample: 8 minibatches of 32").all()
    plain = df[df.parameter == ""]
    assert plain["parameter_value"].isna().all()


def test_self_pair_ceiling(rng):
    X = rng.standard_normal((300, 6))
    df = compute_measures(moments_from_arrays(X, X, rng.integers(0, 3, 300), subsample_size=50,
                                              minibatch_size=32), {"lasso_alphas": [0.0, 1e-4], "spectral_k": [2, 4]})
    noted = df[df.note != ""]
    assert set(noted.measure) <= {"alignment_k_a", "alignment_k_b", "minimal_match_neurons",
                                     "cka_minibatch"}, noted
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
    m = moments_from_arrays(X, np.zeros((50, 3)))     # B entirely dead, no subsample
    df = compute_measures({"positions": m, "flatten": m}, {})
    bad = df[df.value.isna()]
    assert len(bad) and bad["note"].str.startswith("unavailable").all()
    assert {"cka_linear", "hungarian_mean_corr", "sparse_val_r2", "spectral_mixing", "cka_rbf_subsample"} <= set(
        bad.measure)
    # an all-dead B has nothing to match: the subspace match is unavailable too, not 0
    sub = df[df.measure == "subspace_similarity"]
    assert sub["value"].isna().all() and sub["note"].str.contains("representation B is constant").all()


def test_missing_view_and_bad_params(rng):
    v = _views(rng)
    del v["flatten"]
    df = compute_measures(v, {"enabled": ["cka"]})
    assert df["note"].str.contains("view 'flatten' not in").any()
    with pytest.raises(ValueError, match="unknown measures parameter"):
        compute_measures(v, {"nonsense": 1})
    with pytest.raises(ValueError, match="unknown measure families"):
        compute_measures(v, {"enabled": ["nope"]})


def test_streaming_equals_in_memory_for_every_family(tmp_path, rng):
    from convergent.activations import ActivationStore, apply_view
    from convergent.moments import streaming_moments
    from measures_helpers import write_store

    n = 60   # more images than flatten features (45): every view stays primal, as from_arrays picks
    t = rng.integers(0, 3, n)
    a = np.maximum(rng.standard_normal((n, 4, 3, 3)), 0).astype(np.float32)
    b = np.maximum(np.einsum("nchw,cd->ndhw", a, rng.standard_normal((4, 5))), 0).astype(np.float32)
    sa = ActivationStore(write_store(tmp_path / "a.zarr", {"conv": a}, t, chunk_rows=7))
    sb = ActivationStore(write_store(tmp_path / "b.zarr", {"conv": b}, t, chunk_rows=7))
    views = ["positions", "flatten", "pool"]
    kw = dict(subsample_size=30, minibatch_size=8, minibatch_max=None, precision="float64")
    streamed = streaming_moments(sa, sb, "conv", views, images_per_chunk=6, minibatch_views=views,
                                 alignment_views=views, **kw)
    memory = {}
    for v in views:
        X, Y = apply_view(a, v).astype(np.float64), apply_view(b, v).astype(np.float64)
        r = X.shape[0] // n
        memory[v] = moments_from_arrays(X, Y, np.repeat(t, r), n_classes=3, fold_split=(n // 2) * r, **kw,
                                        meta={"minibatch_size": 8, "precision": "float64"})
    params = {"lasso_alphas": [0.0, 1e-2], "spectral_k": [2, 4], "minimal_max_neurons": 3}
    for view_choice in views:
        p = {**params, "views": {fam: view_choice for fam in ("cka", "kernels", "alignment", "matching", "sparse",
                                                              "spectral", "subspace")}}
        d1, d2 = compute_measures(streamed, p), compute_measures(memory, p)
        assert d1[["measure", "view", "parameter"]].equals(d2[["measure", "view", "parameter"]])
        np.testing.assert_allclose(d1["value"], d2["value"], rtol=1e-8, atol=1e-10, equal_nan=True)
