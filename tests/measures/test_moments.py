import numpy as np
import pytest

from convergent.activations import ActivationStore, apply_view
from convergent.moments import accumulate, load_moments, moments_from_arrays, save_moments, streaming_moments
from measures_helpers import write_store

TIGHT = dict(rtol=1e-10, atol=1e-10)


def _data(rng, n=97, d1=5, d2=4, offset=0.0):
    X = rng.standard_normal((n, d1)) + offset
    Y = X[:, :min(d1, d2)] @ rng.standard_normal((min(d1, d2), d2)) + 0.3 * rng.standard_normal((n, d2)) + offset
    t = rng.integers(0, 3, n)
    return X, Y, t


def test_raw_and_centred_moments(rng):
    X, Y, t = _data(rng)
    m = moments_from_arrays(X, Y, t, n_classes=4)
    T = np.eye(4)[t]
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    np.testing.assert_allclose(m.xx, X.T @ X, **TIGHT)
    np.testing.assert_allclose(m.yy, Y.T @ Y, **TIGHT)
    np.testing.assert_allclose(m.xy, X.T @ Y, **TIGHT)
    np.testing.assert_allclose(m.cxy, Xc.T @ Yc, **TIGHT)
    np.testing.assert_allclose(m.cxx, Xc.T @ Xc, **TIGHT)
    np.testing.assert_allclose(m.xt, X.T @ T, **TIGHT)
    np.testing.assert_allclose(m.cyt, Yc.T @ T, **TIGHT)
    np.testing.assert_allclose(m.sum_t, T.sum(0), **TIGHT)
    np.testing.assert_allclose(m.sum_x, X.sum(0), **TIGHT)
    np.testing.assert_allclose(m.var_y, Y.var(0), **TIGHT)
    a, b = (Xc ** 2).sum(1), (Yc ** 2).sum(1)
    terms = m.centred_debias_terms()
    np.testing.assert_allclose(terms["sum_ab"], a @ b, rtol=1e-10)
    np.testing.assert_allclose(terms["sum_aa"], a @ a, rtol=1e-10)
    np.testing.assert_allclose(terms["sum_bb"], b @ b, rtol=1e-10)
    np.testing.assert_allclose(terms["tr_x"], a.sum(), rtol=1e-10)


def test_folds_partition_rows(rng):
    X, Y, t = _data(rng, n=50)
    m = moments_from_arrays(X, Y, t, fold_split=20)
    f0 = moments_from_arrays(X[:20], Y[:20], t[:20], n_classes=3)
    assert (m.fold(0).n, m.fold(1).n, m.n) == (20, 30, 50)
    np.testing.assert_allclose(m.fold(0).cxy, f0.cxy, **TIGHT)
    np.testing.assert_allclose(m.fold(1).xx, X[20:].T @ X[20:], **TIGHT)
    assert m.total() is m
    assert moments_from_arrays(X, Y, t).fold(0).n == 25      # default split n // 2


def test_large_offset_does_not_cancel(rng):
    X, Y, t = _data(rng, n=400, offset=1e7)
    m = moments_from_arrays(X, Y, t, chunk_rows=64)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    # a naive raw-moment formula would lose ~all digits at offset 1e7 (1e14 vs O(1) variances)
    np.testing.assert_allclose(m.cxy, Xc.T @ Yc, rtol=1e-6, atol=1e-6 * np.abs(Xc.T @ Yc).max())
    np.testing.assert_allclose(m.var_x, X.var(0), rtol=1e-6)


@pytest.mark.parametrize("chunk", [1, 7, 32, 97])
def test_chunking_is_invisible(rng, chunk):
    X, Y, t = _data(rng)
    ref = moments_from_arrays(X, Y, t, subsample_size=30, minibatch_size=8)
    m = moments_from_arrays(X, Y, t, subsample_size=30, minibatch_size=8, chunk_rows=chunk)
    # the shift (first block's mean) depends on the blocking; shift-free quantities must not
    for f in ("cxx", "cxy", "cyy", "xx", "xy", "cxt", "ax", "ayt", "mb_xy", "mb_yy", "sub_kx", "sub_ky"):
        np.testing.assert_allclose(getattr(m, f), getattr(ref, f), rtol=1e-9, atol=1e-9, err_msg=f)
    np.testing.assert_allclose(list(m.centred_debias_terms().values()),
                               list(ref.centred_debias_terms().values()), rtol=1e-9)
    assert m.mb_count == ref.mb_count == (48 // 8) + (49 // 8)
    np.testing.assert_array_equal(m.sub_idx, ref.sub_idx)


def test_alignment_terms_are_row_normalised(rng):
    X, Y, t = _data(rng)
    m = moments_from_arrays(X, Y, t)
    P = np.hstack([X, np.ones((len(X), 1))])
    P /= np.linalg.norm(P, axis=1, keepdims=True)
    np.testing.assert_allclose(m.ax, P.T @ P, **TIGHT)
    np.testing.assert_allclose(m.axt, P.T @ np.eye(3)[t], **TIGHT)


def test_subsample_gram(rng):
    X, Y, t = _data(rng)
    m = moments_from_arrays(X, Y, t, subsample_size=20, subsample_seed=3)
    idx = np.sort(np.random.default_rng(3).choice(len(X), 20, replace=False))
    np.testing.assert_array_equal(m.sub_idx, idx)
    Xs = X[idx] - X[idx].mean(0)
    np.testing.assert_allclose(m.sub_kx, Xs @ Xs.T, **TIGHT)
    np.testing.assert_array_equal(m.sub_labels, t[idx])


def test_mixed_precision_close(rng):
    X, Y, t = _data(rng, n=300, offset=3.0)
    X, Y = X.astype(np.float32), Y.astype(np.float32)
    a = moments_from_arrays(X, Y, t, precision="mixed", chunk_rows=50)
    b = moments_from_arrays(X, Y, t)
    np.testing.assert_allclose(a.cxy, b.cxy, rtol=1e-4, atol=1e-4 * np.abs(b.cxy).max())
    np.testing.assert_allclose(a.ax, b.ax, rtol=1e-5, atol=1e-5)


def test_accumulate_matches_from_arrays(rng):
    X, Y, t = _data(rng)
    m = accumulate(((X[s:s + 10], Y[s:s + 10], t[s:s + 10]) for s in range(0, 97, 10)), n_rows=97, n_classes=3)
    np.testing.assert_allclose(m.cxy, moments_from_arrays(X, Y, t).cxy, **TIGHT)


# ----------------------------------------------------------------------------- degenerate

def test_nonfinite_rejected(rng):
    X, Y, t = _data(rng)
    X[40, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite.*row 40"):
        moments_from_arrays(X, Y, t, chunk_rows=16)
    X[40, 2] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        moments_from_arrays(X, Y, t)


def test_mismatched_rows_rejected(rng):
    X, Y, t = _data(rng)
    with pytest.raises(ValueError, match="rows"):
        moments_from_arrays(X, Y[:-1], t)
    with pytest.raises(ValueError, match="2-D"):
        moments_from_arrays(X[:, 0], Y, t)


# ----------------------------------------------------------------------------- Zarr streaming

@pytest.fixture
def stores(tmp_path, rng):
    n = 29   # more images than the flatten view has features (24): primal, like from_arrays
    t = rng.integers(0, 4, n)
    conv_a = rng.standard_normal((n, 3, 2, 3)).astype(np.float32) + 2
    conv_b = (np.einsum("nchw,cd->ndhw", conv_a, rng.standard_normal((3, 4))) + rng.standard_normal((n, 4, 2, 3))
              ).astype(np.float32)
    dense_a = rng.standard_normal((n, 6)).astype(np.float32)
    dense_b = np.maximum(dense_a @ rng.standard_normal((6, 5)), 0).astype(np.float32)
    a = write_store(tmp_path / "a.zarr", {"conv": conv_a, "fc": dense_a}, t, chunk_rows=5)
    b = write_store(tmp_path / "b.zarr", {"conv": conv_b, "fc": dense_b}, t, chunk_rows=5)
    return ActivationStore(a), ActivationStore(b), {"conv": (conv_a, conv_b), "fc": (dense_a, dense_b)}, t


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("ipc", [None, 1, 4, 23, 50])
@pytest.mark.parametrize("layer", ["conv", "fc"])
def test_streaming_equals_in_memory(stores, ipc, layer, threads):
    sa, sb, raw, t = stores
    views = ["positions", "flatten", "pool"]
    out = streaming_moments(sa, sb, layer, views, images_per_chunk=ipc, subsample_size=10, minibatch_size=4,
                            minibatch_views=views, alignment_views=views, precision="float64", prefetch=ipc != 4,
                            threads=threads)
    a, b = raw[layer]
    for view, m in out.items():
        X, Y = apply_view(a, view).astype(np.float64), apply_view(b, view).astype(np.float64)
        rows_per_image = X.shape[0] // len(t)
        labels = np.repeat(t, rows_per_image)
        ref = moments_from_arrays(X, Y, labels, n_classes=4, fold_split=(len(t) // 2) * rows_per_image,
                                  subsample_size=10, minibatch_size=4)
        assert m.n == ref.n and m.fold(0).n == ref.fold(0).n
        for f in ("cxx", "cxy", "cyy", "xy", "xt", "ax", "ayt"):
            np.testing.assert_allclose(getattr(m, f), getattr(ref, f), rtol=1e-9, atol=1e-9, err_msg=f"{view} {f}")
        for f in ("mb_xy", "mb_xx", "sub_kx", "sub_ky"):
            np.testing.assert_allclose(getattr(m, f), getattr(ref, f), rtol=1e-9, atol=1e-9, err_msg=f"{view} {f}")
        np.testing.assert_allclose(m.fold(1).cxy, ref.fold(1).cxy, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(list(m.centred_debias_terms().values()),
                                   list(ref.centred_debias_terms().values()), rtol=1e-9)
        assert m.meta["layer"] == layer and m.meta["view"] == (view if layer == "conv" else "dense")
    if layer == "fc":
        assert out["positions"] is out["flatten"] is out["pool"]


@pytest.mark.parametrize("precision", ["mixed", "float64"])
def test_fold_threads_give_the_same_bits(stores, precision):
    """threads=2 (one thread per fold, the boundary chunk read by both) blocks the rows exactly
    as one thread does, so every stored sum is bitwise equal, not just close."""
    sa, sb, _, _ = stores
    kw = dict(images_per_chunk=4, subsample_size=10, minibatch_size=4, minibatch_views=["pool"],
              alignment_views=["pool"], precision=precision)
    one = streaming_moments(sa, sb, "conv", ["positions", "pool"], threads=1, **kw)
    two = streaming_moments(sa, sb, "conv", ["positions", "pool"], threads=2, **kw)
    for view in one:
        for fold in (0, 1):
            for name in ("sx", "sxx", "syy", "sxy", "sxt", "s_pxpy", "s_x_py", "ax", "ayt", "mb_xy"):
                a, b = getattr(one[view].fold(fold), name), getattr(two[view].fold(fold), name)
                assert (a is None and b is None) or np.array_equal(a, b), (view, fold, name)
        np.testing.assert_array_equal(one[view].sub_kx, two[view].sub_kx)
        np.testing.assert_array_equal(one[view].sub_labels, two[view].sub_labels)
    with pytest.raises(ValueError, match="threads must be 1 or 2"):
        streaming_moments(sa, sb, "conv", ["pool"], threads=3)


def test_save_load_roundtrip(stores, tmp_path):
    sa, sb, _, _ = stores
    out = {**streaming_moments(sa, sb, "conv", ["positions", "pool"], subsample_size=5, minibatch_size=4),
           **{"dense_" + k: v for k, v in streaming_moments(sa, sb, "fc", ["flatten", "pool"]).items()}}
    path = save_moments(tmp_path / "x" / "m.npz", out)
    back = load_moments(path)
    assert set(back) == set(out)
    assert back["dense_flatten"] is back["dense_pool"]
    for k in out:
        np.testing.assert_array_equal(back[k].cxy, out[k].cxy)
        np.testing.assert_array_equal(back[k].fold(1).syy, out[k].fold(1).syy)
        assert back[k].meta == out[k].meta
        assert back[k].mb_count == out[k].mb_count
    np.testing.assert_array_equal(back["positions"].sub_kx, out["positions"].sub_kx)
    assert back["positions"].meta["subsample_seed"] == 0
    assert not list((tmp_path / "x").glob(".*tmp*"))


def test_streaming_rejects_mismatch(tmp_path, rng, stores):
    sa, _, raw, t = stores
    c = ActivationStore(write_store(tmp_path / "c.zarr", {"conv": raw["conv"][1][:-1]}, t[:-1]))
    with pytest.raises(ValueError, match="number of images"):
        streaming_moments(sa, c, "conv", ["pool"])
    t2 = t.copy()
    t2[0] = (t2[0] + 1) % 4
    d = ActivationStore(write_store(tmp_path / "d.zarr", {"conv": raw["conv"][1]}, t2))
    with pytest.raises(ValueError, match="targets differ"):
        streaming_moments(sa, d, "conv", ["pool"])


def test_flatten_too_wide_takes_the_dual_form(stores, caplog):
    """Issue 13: a view wider than max_features is no longer refused or skipped: it takes the
    dual (n × n Gram) form, and the form and its memory are logged."""
    sa, sb, _, _ = stores
    with caplog.at_level("INFO", logger="convergent"):
        out = streaming_moments(sa, sb, "conv", ["flatten"], max_features=10)
    assert out["flatten"].form == "dual" and out["flatten"].n == 29
    assert any("'flatten'" in r.message and "dual form" in r.message and "max_features=10" in r.message
               and "GiB" in r.message for r in caplog.records)


def test_flatten_too_wide_beside_views_that_fit(stores):
    """A wide early conv layer keeps its positions/pool measures (primal) and gets its flatten
    CKA from the Gram; a unit measure asked of the dual view says which, why, d and n."""
    from convergent.measures import compute_measures

    sa, sb, _, _ = stores
    out = streaming_moments(sa, sb, "conv", ["positions", "flatten", "pool"], max_features=10)
    assert [out[v].form for v in ("positions", "flatten", "pool")] == ["primal", "dual", "primal"]
    table = compute_measures(out, {"views": {"matching": "flatten"}, "enabled": ["cka", "matching", "subspace"]})
    cka = table[table["measure"] == "cka_linear"]
    assert len(cka) == 1 and np.isfinite(cka["value"].iloc[0]) and cka["view"].iloc[0] == "flatten"
    hung = table[table["measure"] == "hungarian_mean_corr"]
    assert hung["value"].isna().all()
    assert hung["note"].iloc[0].startswith("unavailable: hungarian_mean_corr needs the d × d")
    assert "view 'flatten' is dual (d=24 > max_features=10, n=29)" in hung["note"].iloc[0]
    assert table[(table["measure"] == "subspace_similarity") & (table["view"] == "positions")]["value"].notna().all()


@pytest.mark.parametrize("alignment", [False, True])
def test_memory_estimate_covers_the_accumulators_it_describes(alignment):
    """The estimate in the skip message: the folds' float64 sums, their total (one more copy) and
    a float32 block product, checked against the arrays an accumulator really allocates."""
    from convergent.moments import MomentAccumulator, moments_memory_gib

    acc = MomentAccumulator(300, 200, 10, n_rows=100, fold_split=50, alignment=alignment, precision="mixed")
    fold_bytes = sum(a.nbytes for f in acc.folds for a in vars(f).values() if isinstance(a, np.ndarray))
    estimate = moments_memory_gib(300, 200, 10, alignment) * 2**30
    assert 1.5 * fold_bytes <= estimate <= 2.0 * fold_bytes


def test_streaming_defaults_mixed_precision(stores):
    sa, sb, raw, t = stores
    out = streaming_moments(sa, sb, "conv", ["positions", "flatten", "pool"])
    assert out["flatten"].meta["precision"] == "mixed"
    assert out["positions"].ax is None and out["flatten"].ax is not None      # alignment only where asked
    assert out["positions"].meta["minibatch_size"] == 0
    X, Y = (apply_view(a, "positions").astype(np.float64) for a in raw["conv"])
    ref = moments_from_arrays(X, Y)
    np.testing.assert_allclose(out["positions"].cxy, ref.cxy, rtol=1e-5, atol=1e-5 * np.abs(ref.cxy).max())


def test_streaming_nonfinite_stops_cleanly(tmp_path, rng):
    import threading

    n = 30
    t = rng.integers(0, 2, n)
    a = rng.standard_normal((n, 3)).astype(np.float32)
    b = rng.standard_normal((n, 3)).astype(np.float32)
    sa = ActivationStore(write_store(tmp_path / "a.zarr", {"fc": a}, t, chunk_rows=5))
    sb = ActivationStore(write_store(tmp_path / "b.zarr", {"fc": b}, t, chunk_rows=5))
    # the writer refuses NaN, so poison a chunk of the written array directly
    import zarr
    zarr.open_group(str(tmp_path / "b.zarr"), mode="r+")["fc"][10:15] = np.nan
    for threads in (1, 2):
        with pytest.raises(ValueError, match=r"Y \(network B\).*non-finite.*row 10"):
            streaming_moments(sa, ActivationStore(tmp_path / "b.zarr"), "fc", ["pool"], images_per_chunk=5,
                              threads=threads)
    # in fold 1 (rows 15-29), found by the second fold's thread
    zarr.open_group(str(tmp_path / "b.zarr"), mode="r+")["fc"][10:15] = b[10:15]
    zarr.open_group(str(tmp_path / "b.zarr"), mode="r+")["fc"][22, 1] = np.inf
    with pytest.raises(ValueError, match=r"Y \(network B\).*non-finite.*row 22"):
        streaming_moments(sa, ActivationStore(tmp_path / "b.zarr"), "fc", ["pool"], images_per_chunk=5, threads=2)
    assert not [th for th in threading.enumerate() if th.name.startswith(("moments-prefetch", "moments-fold"))]


def test_conv_view_wider_than_its_images_takes_the_dual_form(stores, tmp_path, rng):
    """A conv layer's flatten view with more features than images (c·h·w > n) is accumulated as
    n × n Grams even below max_features; a dense layer of the same width stays primal (its one
    view serves the unit-level measures)."""
    from measures_helpers import write_store

    n = 12
    t = rng.integers(0, 3, n)
    conv = rng.standard_normal((n, 2, 3, 3)).astype(np.float32)        # flatten: 18 > 12 images
    dense = rng.standard_normal((n, 18)).astype(np.float32)
    sa = ActivationStore(write_store(tmp_path / "a.zarr", {"conv": conv, "fc": dense}, t, chunk_rows=5))
    sb = ActivationStore(write_store(tmp_path / "b.zarr", {"conv": conv[:, ::-1], "fc": dense[:, ::-1]}, t,
                                     chunk_rows=5))
    out = streaming_moments(sa, sb, "conv", ["positions", "flatten", "pool"])
    assert [out[v].form for v in ("positions", "flatten", "pool")] == ["primal", "dual", "primal"]
    assert "> 12 rows" in out["flatten"].describe()
    assert streaming_moments(sa, sb, "fc", ["flatten"])["flatten"].form == "primal"
