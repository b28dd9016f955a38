"""Chance levels, calibration and the SE over examples (convergent.measures.chance and the
replicates of convergent.moments): each against brute force on small data."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from convergent.measures import compute_measures, linear_cka
from convergent.measures.chance import (calibrate, jackknife_se, linear_cka_chance, permutation_p,
                                        rv_permutation_moments)
from convergent.moments import load_moments, moments_from_arrays, save_moments
from convergent.moments.replicates import image_permutations
from tests.measures import naive

FAMILIES = ["cka", "matching", "subspace", "alignment", "cca", "shape", "linreg", "rsa"]


def relu_features(rng, n, d, shared=None, weight=0.0):
    """ReLU of random features: independent across calls unless ``shared`` latent rows are mixed in."""
    z = rng.standard_normal((n, d))
    if shared is not None:
        z = (1 - weight) * z + weight * shared @ rng.standard_normal((shared.shape[1], d))
    return np.maximum(z, 0.0)


def centred_gram(X):
    Xc = X - X.mean(axis=0)
    return Xc @ Xc.T


# --------------------------------------------------------------------------- linear CKA: closed form

def test_rv_closed_form_equals_every_permutation_enumerated(rng):
    """Mean and variance of linear CKA over all 8! row permutations = the closed form, exactly."""
    n = 8
    X, Y = rng.standard_normal((n, 3)) ** 2, rng.standard_normal((n, 2))
    K, L = centred_gram(X), centred_gram(Y)
    norm = np.linalg.norm(K) * np.linalg.norm(L)
    vals = np.array([np.vdot(K, L[np.ix_(p, p)]) / norm for p in itertools.permutations(range(n))])
    terms = [(np.trace(G), np.vdot(G, G), np.sum(np.diag(G) ** 2)) for G in (K, L)]
    mean, var = rv_permutation_moments(*terms, n)
    assert mean == pytest.approx(vals.mean(), rel=1e-12)
    assert var == pytest.approx(vals.var(), rel=1e-10)
    # the moments carry the same terms: the primal and the dual form give the same chance level
    for form in ("primal", "dual"):
        m = moments_from_arrays(X, Y, form=form)
        got_mean, got_sd = linear_cka_chance(m)
        assert got_mean == pytest.approx(vals.mean(), rel=1e-10)
        assert got_sd == pytest.approx(vals.std(), rel=1e-8)


def test_rv_closed_form_p_value_near_brute_force_permutations(rng):
    n = 60
    shared = rng.standard_normal((n, 2))
    X, Y = relu_features(rng, n, 6, shared, 0.3), relu_features(rng, n, 5, shared, 0.3)
    m = moments_from_arrays(X, Y)
    df = compute_measures(m, {"enabled": ["cka"]})
    row = df[df["measure"] == "cka_linear"].iloc[0]
    value = naive.cka_linear(naive.centre(X), naive.centre(Y))
    perm = np.array([naive.cka_linear(naive.centre(X), naive.centre(Y[rng.permutation(n)])) for _ in range(4000)])
    assert row["chance"] == pytest.approx(perm.mean(), abs=4 * perm.std() / np.sqrt(perm.size))
    assert row["p_value"] == pytest.approx(np.mean(perm >= value), abs=0.03)
    assert row["null_method"].startswith("closed form")


# --------------------------------------------------------------------------- null worlds

def test_primal_null_world_is_the_moments_of_permuted_rows(rng):
    n, k = 64, 3
    X, Y, lab = relu_features(rng, n, 5), relu_features(rng, n, 4), rng.integers(0, 3, n)
    m = moments_from_arrays(X, Y, lab, 3, null_permutations=5, null_seed=7)
    pi, rho = image_permutations(n, n // 2, 5, 7)[k]
    assert set(pi[: n // 2]) == set(range(n // 2)) and set(rho[n // 2:]) == set(range(n // 2, n))  # within folds
    want = compute_measures(moments_from_arrays(X[pi], Y[rho], lab, 3), {"enabled": FAMILIES})
    got = compute_measures(m.null_world(k), {"enabled": FAMILIES})
    np.testing.assert_allclose(got["value"].to_numpy(float), want["value"].to_numpy(float), rtol=1e-9, atol=1e-11)


def test_dual_null_world_is_an_exact_reindexing(rng):
    n = 40
    X, Y, lab = relu_features(rng, n, 30), relu_features(rng, n, 25), rng.integers(0, 3, n)
    m = moments_from_arrays(X, Y, lab, 3, form="dual", null_permutations=4)
    assert m.n_null == 4
    pi, rho = m.null_permutation(2)
    want = moments_from_arrays(X[pi], Y[rho], lab, 3, form="dual")
    got = m.null_world(2)
    for debiased in (False, True):
        assert linear_cka(got, debiased=debiased) == pytest.approx(linear_cka(want, debiased=debiased), rel=1e-10)
    # the dual form's kernels on all rows (cka_rbf, mutual_knn) too: a world is an exact permutation
    fams = ["cka", "kernels", "shape", "rsa", "linreg", "alignment"]
    w, g = (compute_measures(x, {"enabled": fams}) for x in (want, got))
    assert {"cka_rbf", "mutual_knn"} <= set(g["measure"])
    np.testing.assert_allclose(g["value"].to_numpy(float), w["value"].to_numpy(float), rtol=1e-8, atol=1e-10)
    # and the chance level of each is the mean over the worlds
    table = compute_measures(m, {"enabled": fams, "null_families": fams}).set_index(["measure", "parameter_value"])
    worlds = [compute_measures(m.null_world(k), {"enabled": ["kernels"]}) for k in range(4)]
    rbf = np.mean([wd.set_index(["measure", "parameter_value"]).loc[("cka_rbf", 0.4), "value"] for wd in worlds])
    assert table.loc[("cka_rbf", 0.4), "chance"] == pytest.approx(rbf, rel=1e-12)


def test_dual_kernels_on_all_rows_get_a_chance_level_by_default(rng):
    """A dual view's kernels on all rows are permuted by default (exact reindexings of Grams in
    memory); the subsample's kernels, and a primal view's, only when kernels is listed."""
    n = 40
    X, Y = relu_features(rng, n, 30), relu_features(rng, n, 25)
    dual = compute_measures(moments_from_arrays(X, Y, form="dual", null_permutations=4, subsample_size=20),
                            {"enabled": ["kernels"]}).set_index("measure")
    assert (dual.loc["cka_rbf", "null_method"] == "permutations").all()
    assert np.isfinite(dual.loc["mutual_knn", "chance"])
    assert "null_families" in dual.loc["mutual_knn_subsample", "null_method"]
    primal = compute_measures(moments_from_arrays(X[:, :5], Y[:, :5], null_permutations=4, subsample_size=20),
                              {"enabled": ["kernels"]}).set_index("measure")
    assert "null_families" in primal.loc["mutual_knn_subsample", "null_method"]


def test_null_worlds_are_the_same_for_every_pair(rng):
    """Null world k permutes the same images in every pair (seeded by the sweep, not the pair)."""
    a = image_permutations(100, 50, 3, 0)
    b = image_permutations(100, 50, 3, 0)
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    assert not np.array_equal(a[0][0], a[1][0])


# --------------------------------------------------------------------------- example blocks

@pytest.mark.parametrize("form", ["primal", "dual"])
def test_jackknife_replicate_is_the_moments_without_the_block(rng, form):
    n = 80
    X, Y, lab = relu_features(rng, n, 6), relu_features(rng, n, 5), rng.integers(0, 3, n)
    m = moments_from_arrays(X, Y, lab, 3, form=form, example_blocks=8, subsample_size=30)
    lo, hi = m.meta["example_block_rows"][5]
    assert (lo, hi) == (50, 60)     # 4 blocks of 10 images per fold of 40
    keep = np.r_[0:lo, hi:n]
    want = moments_from_arrays(X[keep], Y[keep], lab[keep], 3, form=form, fold_split=n // 2)
    got = m.jackknife(5)
    fams = FAMILIES if form == "primal" else ["cka", "shape", "rsa", "linreg", "alignment"]
    w, g = (compute_measures(x, {"enabled": fams}) for x in (want, got))
    np.testing.assert_allclose(g["value"].to_numpy(float), w["value"].to_numpy(float), rtol=1e-8, atol=1e-10)


def test_positions_blocks_and_permutations_move_whole_images():
    from convergent.moments.replicates import expand_rows, image_blocks

    assert image_blocks(10, 5, 4) == [(0, 2), (2, 5), (5, 7), (7, 10)]
    np.testing.assert_array_equal(expand_rows(np.array([2, 0]), 3), [6, 7, 8, 0, 1, 2])
    with pytest.raises(ValueError, match="even"):
        image_blocks(10, 5, 3)


def test_se_examples_agrees_with_a_bootstrap_over_images(rng):
    """The block-jackknife SE against a brute-force bootstrap over images of the naive formulas."""
    n = 600
    shared = rng.standard_normal((n, 4))
    X, Y = relu_features(rng, n, 8, shared, 0.6), relu_features(rng, n, 7, shared, 0.6)
    m = moments_from_arrays(X, Y, example_blocks=20)
    df = compute_measures(m, {"enabled": ["cka", "cca", "shape"]}).set_index("measure")
    boot = {"cka_linear": [], "cca_mean": [], "procrustes_distance": []}
    for _ in range(400):
        i = rng.integers(0, n, n)
        Xc, Yc = naive.centre(X[i]), naive.centre(Y[i])
        # Kornblith et al.'s feature-space form (the n × n naive one is too slow for 400 resamples)
        boot["cka_linear"].append(np.sum((Xc.T @ Yc) ** 2) / (np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc)))
        boot["cca_mean"].append(np.mean(naive.cca_rhos(Xc, Yc)))
        boot["procrustes_distance"].append(naive.procrustes(Xc, Yc)[1])
    ratios = {k: df.loc[k, "se_examples"] / np.std(v) for k, v in boot.items()}
    assert all(0.6 < r < 1.6 for r in ratios.values()), ratios
    assert 0.75 < np.exp(np.mean(np.log(list(ratios.values())))) < 1.33, ratios


def test_jackknife_se_formula():
    assert jackknife_se(np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(np.sqrt(3 / 4 * 5.0))
    assert np.isnan(jackknife_se(np.array([1.0, np.nan, 3.0])))


# --------------------------------------------------------------------------- calibration

def test_calibrated_cka_is_zero_for_independent_networks_at_every_width(rng):
    """Raw linear CKA of unrelated ReLU features rises with width; calibrated CKA stays at 0."""
    n, raw, cal = 360, [], []
    for d in (16, 64, 128):
        vals = []
        for _ in range(3):
            m = moments_from_arrays(relu_features(rng, n, d), relu_features(rng, n, d), null_permutations=10)
            df = compute_measures(m, {"enabled": ["cka", "matching", "cca"]}).set_index("measure")
            vals.append(df.loc[["cka_linear", "svcca", "hungarian_mean_corr"], ["value", "calibrated"]])
        mean = sum(vals) / len(vals)
        raw.append(mean.loc["cka_linear", "value"])
        cal.append(mean["calibrated"])
    assert raw[0] < raw[1] < raw[2] and raw[2] > 0.2          # the artefact
    for c in cal:
        assert abs(c["cka_linear"]) < 0.02
        assert abs(c["svcca"]) < 0.05 and abs(c["hungarian_mean_corr"]) < 0.05


def test_calibration_has_the_invariances_of_its_measure(rng):
    n = 120
    shared = rng.standard_normal((n, 3))
    X, Y = relu_features(rng, n, 6, shared, 0.5), relu_features(rng, n, 6, shared, 0.5)
    Q = np.linalg.qr(rng.standard_normal((6, 6)))[0]
    base = compute_measures(moments_from_arrays(X, Y, null_permutations=6), {"enabled": ["cka"]}).set_index("measure")
    moved = compute_measures(moments_from_arrays(X, 3.0 * Y @ Q + 5.0, null_permutations=6),
                             {"enabled": ["cka"]}).set_index("measure")
    for col in ("chance", "calibrated", "p_value"):
        assert moved.loc["cka_linear", col] == pytest.approx(base.loc["cka_linear", col], rel=1e-9)
    same = compute_measures(moments_from_arrays(X, X, null_permutations=6), {"enabled": ["cka", "shape"]})
    same = same.set_index("measure")
    assert same.loc["cka_linear", "calibrated"] == pytest.approx(1.0)
    assert same.loc["procrustes_distance", "calibrated"] == pytest.approx(1.0, abs=1e-6)   # a distance: 0 → 1
    assert same.loc["cka_linear", "p_value"] < 1e-6


def test_calibrate_and_p_value_conventions():
    assert calibrate("cka_linear", 0.5, 0.5) == 0.0
    assert calibrate("cka_linear", 1.0, 0.2) == 1.0
    assert calibrate("procrustes_distance", 0.0, 1.4) == 1.0
    assert calibrate("procrustes_distance", 1.4, 1.4) == 0.0
    assert np.isnan(calibrate("cka_linear", 1.0, 1.0))
    assert permutation_p("cka_linear", 0.9, np.array([0.1, 0.2, 0.95])) == pytest.approx(2 / 4)
    assert permutation_p("procrustes_distance", 0.1, np.array([1.0, 1.2, 0.05])) == pytest.approx(2 / 4)


def test_rows_without_a_null_say_why(rng):
    n = 60
    m = moments_from_arrays(relu_features(rng, n, 5), relu_features(rng, n, 5), null_permutations=4)
    df = compute_measures(m, {"enabled": ["cka", "spectral"], "spectral_k": [2]}).set_index("measure")
    assert "not in measures.null_families" in df.loc["spectral_mixing", "null_method"]
    assert np.isnan(df.loc["spectral_mixing", "chance"])
    none = compute_measures(moments_from_arrays(relu_features(rng, n, 5), relu_features(rng, n, 5)),
                            {"enabled": ["matching"]}).set_index("measure")
    assert "null_permutations is 0" in none.loc["hungarian_mean_corr", "null_method"]


def test_rows_above_the_memory_limit_say_why(rng):
    n = 60
    m = moments_from_arrays(relu_features(rng, n, 5), relu_features(rng, n, 5), null_permutations=4,
                            example_blocks=4, replicate_max_gib=1e-9)
    assert m.n_null == 0 and m.n_blocks == 0
    df = compute_measures(m, {"enabled": ["matching"]}).set_index("measure")
    assert "replicate_max_gib" in df.loc["hungarian_mean_corr", "null_method"]


def test_replicates_survive_the_moments_file(rng, tmp_path):
    n = 50
    X, Y, lab = relu_features(rng, n, 4), relu_features(rng, n, 3), rng.integers(0, 2, n)
    m = moments_from_arrays(X, Y, lab, 2, null_permutations=3, example_blocks=4, subsample_size=20)
    back = load_moments(save_moments(tmp_path / "m.npz", m))
    assert (back.n_null, back.n_blocks) == (3, 4)
    a, b = (compute_measures(x, {"enabled": FAMILIES}) for x in (m, back))
    cols = ["value", "chance", "calibrated", "p_value", "se_examples", "jk_0", "jk_3"]
    np.testing.assert_array_equal(a[cols].to_numpy(float), b[cols].to_numpy(float))
    # swapping the networks swaps the per-network rows' chance levels too
    sw = compute_measures(m.swapped(), {"enabled": ["alignment"]}).set_index(["measure", "parameter_value"])
    orig = compute_measures(m, {"enabled": ["alignment"]}).set_index(["measure", "parameter_value"])
    assert sw.loc[("alignment_top_c_a", 2.0), "value"] == pytest.approx(orig.loc[("alignment_top_c_b", 2.0), "value"])


def test_chance_of_matching_and_cca_is_the_mean_of_naive_measures_on_permuted_images(rng):
    """The chance column against the textbook formulas on the permuted arrays themselves."""
    n, P = 48, 6
    shared = rng.standard_normal((n, 2))
    X, Y = relu_features(rng, n, 4, shared, 0.5), relu_features(rng, n, 4, shared, 0.5)
    m = moments_from_arrays(X, Y, null_permutations=P, null_seed=3)
    df = compute_measures(m, {"enabled": ["matching", "cca"]}).set_index("measure")
    match, cca = [], []
    for pi, rho in image_permutations(n, n // 2, P, 3):
        Xp, Yp = X[pi], Y[rho]
        R = naive.corr(Xp, Yp)
        match.append(R[np.arange(4), naive.best_assignment_bruteforce(R)].mean())
        cca.append(np.mean(naive.cca_rhos(Xp, Yp)))
    assert df.loc["hungarian_mean_corr", "chance"] == pytest.approx(np.mean(match), rel=1e-9)
    assert df.loc["cca_mean", "chance"] == pytest.approx(np.mean(cca), rel=1e-9)
    value = df.loc["hungarian_mean_corr", "value"]
    assert df.loc["hungarian_mean_corr", "p_value"] == pytest.approx((1 + np.sum(np.array(match) >= value)) / (P + 1))
