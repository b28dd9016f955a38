"""The dual (n × n Gram) form of the moments against naive n × n computations (tests/measures/naive.py)."""

import numpy as np
import pytest

import naive
from convergent.activations import ActivationStore, apply_view
from convergent.measures import MeasureUnavailable, alignment_curve, compute_measures, linear_cka, minibatch_cka
from convergent.measures.kernels import mutual_knn_all_rows, rbf_cka_all_rows
from convergent.moments import (FORMAT_VERSION, GramMoments, load_moments, moments_from_arrays, save_moments,
                                streaming_moments, subsample_indices)
from measures_helpers import write_store

TOL = dict(rel=1e-8, abs=1e-8)


def _wide(rng, n=64, d1=300, d2=180, offset=2.0):
    """d ≫ n: Y depends on X non-linearly, plus noise; a common offset tests the centring."""
    X = rng.standard_normal((n, d1)) + offset
    k = min(40, d1)
    Y = np.tanh(X[:, :k] @ rng.standard_normal((k, d2)) / 6) + 0.2 * rng.standard_normal((n, d2)) + offset
    t = rng.integers(0, 4, n)
    return X, Y, t


@pytest.mark.parametrize("chunk_features", [None, 1, 37])
def test_dual_measures_match_naive_when_d_far_above_n(rng, chunk_features):
    X, Y, t = _wide(rng)
    m = moments_from_arrays(X, Y, t, n_classes=4, minibatch_size=8, max_features=100,
                            chunk_features=chunk_features)
    assert isinstance(m, GramMoments) and m.form == "dual" and (m.n, m.d1, m.d2) == (64, 300, 180)
    assert linear_cka(m) == pytest.approx(naive.cka_linear(X, Y), **TOL)
    assert linear_cka(m, debiased=True) == pytest.approx(naive.cka_debiased(X, Y), **TOL)
    ts = (0.2, 0.4, 0.8)
    for t_, v in zip(ts, rbf_cka_all_rows(m, ts)):
        assert v == pytest.approx(naive.rbf_cka(X, Y, t_), **TOL)
    for k in (1, 5, 20):
        assert mutual_knn_all_rows(m, k) == pytest.approx(naive.mutual_knn(X, Y, k), abs=1e-12)
    for side, A in (("a", X), ("b", Y)):
        al = alignment_curve(m, side)
        ref, S = naive.alignment_curve(A, t, 4)
        r = al.curve.size
        assert r == int(np.sum(S ** 2 > 1e-10 * S[0] ** 2))
        np.testing.assert_allclose(al.curve, ref[:r], rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(al.singular_values, S[:r], rtol=1e-8)
    # 64 rows, folds of 32: minibatches of 8 never straddle the fold boundary, so they are naive's
    assert m.mb_count == 8
    assert minibatch_cka(m) == pytest.approx(naive.cka_minibatch(X, Y, 8), **TOL)
    np.testing.assert_allclose(m.var_x, X.var(axis=0), rtol=1e-10)


def test_dual_and_primal_agree_on_every_shared_measure(rng):
    """Same data, both forms: every measure both can give is the same number; the rest say why."""
    X, Y, t = _wide(rng, n=90, d1=30, d2=25)
    kw = dict(n_classes=4, subsample_size=40, subsample_seed=3, minibatch_size=16)
    primal = moments_from_arrays(X, Y, t, form="primal", **kw)
    dual = moments_from_arrays(X, Y, t, form="dual", chunk_features=7, **kw)
    np.testing.assert_allclose(dual.sub_kx, primal.sub_kx, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(dual.sub_idx, primal.sub_idx)
    np.testing.assert_array_equal(dual.sub_labels, primal.sub_labels)
    p = {"lasso_alphas": [0.0], "spectral_k": [2], "minimal_max_neurons": 2}
    a, b = compute_measures({"flatten": primal, "positions": primal}, p), compute_measures(
        {"flatten": dual, "positions": dual}, p)
    keys = ["measure", "view", "parameter", "parameter_value"]
    both = a.merge(b, on=keys, suffixes=("_p", "_d"))
    shared = both[both.value_p.notna() & both.value_d.notna()]
    assert {"cka_linear", "cka_linear_debiased", "cka_minibatch", "cka_rbf_subsample", "mutual_knn_subsample",
            "alignment_top_c_a", "alignment_curve_b", "dead_units_a"} <= set(shared.measure)
    np.testing.assert_allclose(shared.value_d, shared.value_p, rtol=1e-8, atol=1e-10)
    # unit-level measures (positions view here is dual too) say which measure, why, d and n
    gone = b[b.value.isna()]
    for name in ("hungarian_mean_corr", "subspace_similarity", "sparse_val_r2", "spectral_mixing"):
        note = gone[gone.measure == name].note.iloc[0]
        assert note.startswith(f"unavailable: {name} needs ") and "is dual (d=30" in note and "n=90" in note, note
    assert set(b.measure) - set(a.measure) == {"cka_rbf", "mutual_knn"}   # all rows: dual views only


def test_gram_row_subsample_is_declared_and_exact(rng):
    X, Y, t = _wide(rng, n=80, d1=120, d2=90)
    m = moments_from_arrays(X, Y, t, n_classes=4, max_features=50, max_gram_rows=50, subsample_seed=5,
                            minibatch_size=8)
    rows = subsample_indices(80, 50, 5)
    np.testing.assert_array_equal(m.rows, rows)
    assert m.subsampled and m.n == 50 and m.n_rows == 80
    assert linear_cka(m) == pytest.approx(naive.cka_linear(X[rows], Y[rows]), **TOL)
    assert mutual_knn_all_rows(m, 5) == pytest.approx(naive.mutual_knn(X[rows], Y[rows], 5), abs=1e-12)
    with pytest.raises(MeasureUnavailable, match="consecutive rows.*50 of 80"):
        minibatch_cka(m)
    table = compute_measures(m, {"enabled": ["cka", "kernels"], "views": {"cka": "", "kernels": ""}})
    cka = table[table.measure == "cka_linear"]
    assert cka.value.notna().all() and cka.note.str.contains("seeded subsample of 50 of 80 rows").all()


def test_dual_refuses_what_it_cannot_do(rng):
    X, Y, t = _wide(rng, n=20, d1=60, d2=50)
    m = moments_from_arrays(X, Y, t, max_features=10)
    with pytest.raises(MeasureUnavailable, match=r"needs the d × d feature-space sums \(cxy\).*d=60"):
        _ = m.cxy
    with pytest.raises(MeasureUnavailable, match="per-fold"):
        m.fold(0)
    with pytest.raises(AttributeError):
        _ = m.no_such_thing
    p = moments_from_arrays(X[:, :5], Y[:, :5], t)
    with pytest.raises(MeasureUnavailable, match="needs the n × n Gram.*primal"):
        p.gram("a")
    with pytest.raises(ValueError, match="form must be"):
        moments_from_arrays(X, Y, t, form="gram")
    X[3, 7] = np.nan
    with pytest.raises(ValueError, match=r"X \(network A\).*non-finite.*row 3"):
        moments_from_arrays(X, Y, t, max_features=10)


def test_wide_pair_in_memory_stays_far_below_d_squared():
    """The crash of issue 13: 1,500 × 12,000 float32 used to allocate ~4.6 GB of d × d sums."""
    import tracemalloc

    rng = np.random.default_rng(0)
    n, d = 1500, 12000
    X = rng.standard_normal((n, d), dtype=np.float32)
    Y = (X + rng.standard_normal((n, d), dtype=np.float32)).astype(np.float32)
    tracemalloc.start()
    m = moments_from_arrays(X, Y, rng.integers(0, 10, n), precision="mixed")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert m.form == "dual"
    # one d × d float64 matrix is 1.1 GB (the primal sums needed ~4.6 GB); the dual pass holds two
    # 1500² Grams (36 MB), a product temporary and one 64 MiB feature block
    assert peak < 0.2 * 8 * d * d, f"peak {peak / 2**20:.0f} MiB"
    # Y = X + independent noise of equal variance: population CKA = ‖Σ‖² / sqrt(‖Σ‖²‖2Σ‖²) = 1/2, which the
    # debiased estimator recovers at d ≫ n (the biased one is pulled up by the Grams' diagonals)
    assert linear_cka(m, debiased=True) == pytest.approx(0.5, abs=0.02)


# ----------------------------------------------------------------------------- Zarr streaming

@pytest.fixture
def wide_stores(tmp_path, rng):
    n = 26
    t = rng.integers(0, 3, n)
    a = (rng.standard_normal((n, 6, 4, 4)) + 1).astype(np.float32)
    b = np.maximum(np.einsum("nchw,cd->ndhw", a, rng.standard_normal((6, 5))), 0).astype(np.float32)
    dense_a = rng.standard_normal((n, 70)).astype(np.float32)
    dense_b = np.tanh(dense_a @ rng.standard_normal((70, 60))).astype(np.float32)
    sa = write_store(tmp_path / "a.zarr", {"conv": a, "fc": dense_a}, t, chunk_rows=5, chunk_features=20)
    sb = write_store(tmp_path / "b.zarr", {"conv": b, "fc": dense_b}, t, chunk_rows=5, chunk_features=20)
    return ActivationStore(sa), ActivationStore(sb), {"conv": (a, b), "fc": (dense_a, dense_b)}, t


def test_wide_layers_are_written_in_2d_chunks(wide_stores):
    sa, _, _, _ = wide_stores
    assert sa.raw("conv").chunks == (5, 1, 4, 4)          # 16 features per channel: one channel per chunk
    assert sa.raw("fc").chunks == (5, 20)


@pytest.mark.parametrize("ipc", [None, 3, 26])
@pytest.mark.parametrize("layer", ["conv", "fc"])
def test_streaming_dual_equals_in_memory(wide_stores, layer, ipc):
    sa, sb, raw, t = wide_stores
    kw = dict(subsample_size=12, subsample_seed=1, minibatch_size=4, minibatch_max=None, precision="float64")
    out = streaming_moments(sa, sb, layer, ["positions", "flatten", "pool"], max_features=50, images_per_chunk=ipc,
                            minibatch_views=["flatten"], alignment_views=["flatten"], **kw)
    a, b = raw[layer]
    view = "flatten"
    m = out[view]
    assert m.form == "dual" and m.meta["view"] == (view if layer == "conv" else "dense")
    if layer == "conv":
        assert out["positions"].form == out["pool"].form == "primal"
    X, Y = apply_view(a, view).astype(np.float64), apply_view(b, view).astype(np.float64)
    ref = moments_from_arrays(X, Y, t, n_classes=3, form="dual", **kw)
    for f in ("gram_x", "gram_y", "xmu", "var_y", "sub_kx", "sub_ky", "labels", "sub_labels"):
        np.testing.assert_allclose(getattr(m, f), getattr(ref, f), rtol=1e-10, atol=1e-9, err_msg=f)
    assert (m.mb_count, m.mb_xy) == pytest.approx((ref.mb_count, ref.mb_xy), rel=1e-10)
    assert linear_cka(m) == pytest.approx(naive.cka_linear(X, Y), **TOL)
    al = alignment_curve(m, "b")
    np.testing.assert_allclose(al.curve, naive.alignment_curve(Y, t, 3)[0][:al.curve.size], rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("precision", ["mixed", "float64"])
def test_dual_threads_give_the_same_bits(wide_stores, precision):
    sa, sb, _, _ = wide_stores
    kw = dict(max_features=50, subsample_size=10, precision=precision, max_gram_rows=20)
    one = streaming_moments(sa, sb, "conv", ["flatten"], threads=1, **kw)["flatten"]
    two = streaming_moments(sa, sb, "conv", ["flatten"], threads=2, **kw)["flatten"]
    for f in ("gram_x", "gram_y", "xmu", "ymu", "var_x", "sub_kx", "rows", "labels"):
        assert np.array_equal(getattr(one, f), getattr(two, f)), f
    assert one.n == 20 and one.meta["max_gram_rows"] == 20


def test_streaming_dual_nonfinite_is_reported(tmp_path, rng):
    import zarr

    t = rng.integers(0, 2, 12)
    a = rng.standard_normal((12, 30)).astype(np.float32)
    sa = ActivationStore(write_store(tmp_path / "a.zarr", {"fc": a}, t, chunk_rows=4, chunk_features=8))
    sb = ActivationStore(write_store(tmp_path / "b.zarr", {"fc": a}, t, chunk_rows=4, chunk_features=8))
    zarr.open_group(str(tmp_path / "b.zarr"), mode="r+")["fc"][9, 17] = np.inf
    with pytest.raises(ValueError, match=r"Y \(network B\).*non-finite.*features \[0, 30\).*row 9"):
        streaming_moments(sa, ActivationStore(tmp_path / "b.zarr"), "fc", ["flatten"], max_features=10)


def test_dual_save_load_roundtrip(wide_stores, tmp_path):
    import json

    sa, sb, _, _ = wide_stores
    out = streaming_moments(sa, sb, "conv", ["positions", "flatten"], max_features=50, subsample_size=8,
                            minibatch_size=4)
    path = save_moments(tmp_path / "m.npz", out)
    back = load_moments(path)
    assert back["flatten"].form == "dual" and back["positions"].form == "primal"
    for f in ("gram_x", "gram_y", "xmu", "var_x", "sub_kx", "labels", "rows"):
        np.testing.assert_array_equal(getattr(back["flatten"], f), getattr(out["flatten"], f))
    assert back["flatten"].meta == out["flatten"].meta and back["flatten"].mb_xy == out["flatten"].mb_xy
    pd_a, pd_b = compute_measures(out), compute_measures(back)
    np.testing.assert_array_equal(pd_a.value, pd_b.value)
    # the version is honest: this code writes FORMAT_VERSION, refuses a newer file
    with np.load(path) as z:
        arrays = dict(z)
    header = json.loads(bytes(arrays["__header__"]).decode())
    assert header["format_version"] == FORMAT_VERSION == 2
    # a format-1 file (primal views only, the same layout) still loads
    v1 = save_moments(tmp_path / "v1.npz", {"positions": out["positions"]})
    with np.load(v1) as z:
        old = dict(z)
    h1 = json.loads(bytes(old["__header__"]).decode())
    h1["format_version"] = 1
    old["__header__"] = np.frombuffer(json.dumps(h1).encode(), dtype=np.uint8)
    np.savez(tmp_path / "v1.npz", **old)
    np.testing.assert_array_equal(load_moments(tmp_path / "v1.npz")["positions"].cxy, out["positions"].cxy)
    header["format_version"] = 99
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(tmp_path / "new.npz", **arrays)
    with pytest.raises(ValueError, match="format 99"):
        load_moments(tmp_path / "new.npz")


def test_too_big_is_a_clear_error_not_a_crash(rng, monkeypatch):
    """Either form checks its memory before allocating it and says what to change."""
    import convergent.moments.base as base

    monkeypatch.setattr(base, "available_memory_gib", lambda: 1e-6)
    X, Y, t = _wide(rng, n=30, d1=50, d2=40)
    with pytest.raises(MemoryError, match="dual form's two 30 × 30 Grams.*max_gram_rows"):
        moments_from_arrays(X, Y, t, max_features=10)
    with pytest.raises(MemoryError, match="primal form's d × d sums.*form='auto'"):
        moments_from_arrays(X, Y, t, form="primal")


def test_pipeline_jobs_carry_a_dual_view_through(wide_stores, tmp_path, caplog):
    """moments_job → files → measures_job: the wide view's CKA/kernels/alignment come out, its
    unit-level measures say why not, and the log names the form and memory of each view."""
    from convergent.jobs import measures_job, moments_job

    sa, sb, _, _ = wide_stores
    with caplog.at_level("INFO", logger="convergent"):
        moments_job(pairs={"cross/s0-s1": [str(sa.path), str(sb.path)]}, layers=["conv", "fc"],
                    params={"max_features": 50, "subsample_size": 10}, out_dir=str(tmp_path / "m"), threads=2)
    assert any("'flatten': dual form (d=96 > max_features=50" in r.getMessage() for r in caplog.records)
    assert any("'pool': primal form" in r.getMessage() for r in caplog.records)
    table = measures_job(moments_dir=str(tmp_path / "m"), layers=["conv", "fc"],
                         params={"views": {"matching": "flatten"}, "lasso_alphas": [0.0], "spectral_k": [2]},
                         pairs={"cross/s0-s1": {"pair": "x"}}, layer_index={"conv": 1, "fc": 2},
                         out_csv=str(tmp_path / "measures.csv"))
    for layer in ("conv", "fc"):
        rows = table[table.layer == layer]
        for name in ("cka_linear", "cka_linear_debiased", "cka_rbf", "mutual_knn", "alignment_top_c_a",
                     "cka_rbf_subsample"):
            assert rows[rows.measure == name].value.notna().all(), (layer, name)
        note = rows[rows.measure == "hungarian_mean_corr"].note.iloc[0]
        assert note.startswith("unavailable: hungarian_mean_corr needs the d × d") and "is dual" in note
    # the conv layer's unit measures on positions (channels) stay primal and available
    conv = table[table.layer == "conv"]
    assert conv[(conv.measure == "subspace_similarity") & (conv.view == "positions")].value.notna().all()


def test_mixed_precision_dual_is_close_to_float64(rng):
    """float32 block products (exact float64 column means, one rounding) accumulated in float64:
    the measures stay within ~1e-6 of float64 even with a large common offset."""
    X, Y, t = _wide(rng, n=80, d1=400, d2=300, offset=100.0)
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    kw = dict(n_classes=4, max_features=50, chunk_features=64)
    a = moments_from_arrays(X32, Y32, t, precision="mixed", **kw)
    b = moments_from_arrays(X32, Y32, t, precision="float64", **kw)
    assert a.meta["precision"] == "mixed"
    for debiased in (False, True):
        assert linear_cka(a, debiased=debiased) == pytest.approx(linear_cka(b, debiased=debiased), abs=1e-5)
    assert rbf_cka_all_rows(a, (0.4,))[0] == pytest.approx(rbf_cka_all_rows(b, (0.4,))[0], abs=1e-5)
    np.testing.assert_allclose(alignment_curve(a, "a").top(4), alignment_curve(b, "a").top(4), atol=1e-5)
