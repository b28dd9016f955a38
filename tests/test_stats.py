"""The Multi-Bootstrap (convergent.stats) against brute force: weights, example perturbation,
jackknife, seeds needed, and the figures' bands."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from convergent import stats as S
from convergent.stats import Interval, Units, multi_bootstrap, seeds_needed


def _pairs(values_by_pair: dict[tuple[int, int], float]) -> Units:
    return Units.of(list(values_by_pair.values()), list(values_by_pair))


def test_point_value_is_the_plain_mean_and_pairs_weigh_as_products_of_seed_counts():
    vals = {(0, 1): 0.1, (0, 2): 0.2, (1, 2): 0.6, (0, 3): 0.3, (1, 3): 0.5, (2, 3): 0.9}
    iv = multi_bootstrap(_pairs(vals))
    assert iv.value == pytest.approx(np.mean(list(vals.values())), abs=1e-15) and iv.seeds == 4 and iv.units == 6
    universe, codes = S._codes({"v": _pairs(vals)})
    counts = np.array([[2, 0, 1, 1], [0, 0, 4, 0]])        # seed 0 twice, 2 and 3 once; seed 2 four times
    w = S._unit_weights(counts, codes["v"])
    # brute force: every pair of distinct drawn copies of two different seeds
    for d, c in enumerate(counts):
        copies = [s for s, k in enumerate(c) for _ in range(k)]
        want = {p: 0 for p in vals}
        for a, b in itertools.combinations(copies, 2):
            if a != b:
                want[tuple(sorted((a, b)))] += 1
        np.testing.assert_array_equal(w[d], [want[p] for p in vals])
    means, ok = S._weighted_means({"v": _pairs(vals)}, codes, counts, None)
    assert ok.tolist() == [True, False]                     # one seed alone forms no pair: the draw is discarded
    assert means["v"][0] == pytest.approx((2 * 0.2 + 2 * 0.3 + 0.9) / 5)


def test_a_seed_paired_with_itself_is_refused():
    with pytest.raises(ValueError, match="with itself"):
        multi_bootstrap(Units.of([0.5, 0.6], [(0, 0), (0, 1)]))


def test_example_perturbation_is_the_reweighted_mean_over_blocks():
    """For a value that is a mean over B blocks the jackknife linearisation is exact:
    v + (1/B) Σ (w_b − 1) I_b equals Σ w_b x_b / B for any block multiplicities w."""
    rng = np.random.default_rng(0)
    B, n = 8, 5
    x = rng.standard_normal((n, B))                         # per-unit, per-block contributions
    v = x.mean(axis=1)
    jk = (x.sum(axis=1, keepdims=True) - x) / (B - 1)
    inf = (B - 1) * (jk.mean(axis=1, keepdims=True) - jk)
    units = Units(v, tuple((s,) for s in range(n)), inf)
    _, codes = S._codes({"v": units})
    w = rng.multinomial(B, np.full(B, 1 / B), size=50)
    means, _ = S._weighted_means({"v": units}, codes, np.ones((50, n), dtype=np.int64), w)
    np.testing.assert_allclose(means["v"], (w @ x.T / B).mean(axis=1), rtol=0, atol=1e-12)


def test_examples_widen_the_interval_when_the_images_disagree():
    rng = np.random.default_rng(1)
    B, n = 8, 6
    shared = 0.2 * rng.standard_normal(B)                   # the images' luck, common to every network
    x = 0.5 + 0.01 * rng.standard_normal((n, 1)) + shared + 0.001 * rng.standard_normal((n, B))
    jk = (x.sum(axis=1, keepdims=True) - x) / (B - 1)
    inf = (B - 1) * (jk.mean(axis=1, keepdims=True) - jk)
    seeds_only = multi_bootstrap(Units(x.mean(1), tuple((s,) for s in range(n))))
    both = multi_bootstrap(Units(x.mean(1), tuple((s,) for s in range(n)), inf))
    assert both.blocks == B and seeds_only.blocks == 0
    # the block means' standard error is ≈ 0.2 / sqrt(8) = 0.07, the seeds' ≈ 0.004
    assert both.se > 5 * seeds_only.se and both.se == pytest.approx(shared.std(ddof=1) / np.sqrt(B), rel=0.35)


def test_seed_t_and_jackknife_match_the_t_interval_for_a_network_mean():
    vals = np.array([0.61, 0.58, 0.66, 0.6, 0.63])
    units = Units.of(vals, list(range(5)))
    t = sps.t.ppf(0.975, 4) * vals.std(ddof=1) / np.sqrt(5)
    jk = multi_bootstrap(units, method="seed_jackknife")
    assert (jk.ci_low, jk.ci_high) == pytest.approx((vals.mean() - t, vals.mean() + t), abs=1e-12)
    st = multi_bootstrap(units, n_boot=20000)     # bootstrap sd · sqrt(n/(n−1)) ≈ s/sqrt(n)
    assert st.ci_high - st.ci_low == pytest.approx(2 * t, rel=0.05)


def test_too_few_seeds_give_no_interval():
    one_pair = multi_bootstrap(Units.of([0.7], [(0, 1)]))
    assert one_pair.seeds == 2 and not one_pair.enough
    agree = multi_bootstrap(Units.of([0.7, 0.7, 0.7], [(0, 1), (0, 2), (1, 2)]))
    assert agree.enough and agree.se < 1e-12
    assert agree.ci_low == pytest.approx(0.7, abs=1e-12) and agree.ci_high == pytest.approx(0.7, abs=1e-12)


def test_jointly_drawn_groups_cancel_a_shared_seed_effect():
    """frozen − unfrozen of the same seeds: a large per-seed effect common to both groups cancels in the
    joint draw; resampling each group on its own would keep it."""
    rng = np.random.default_rng(2)
    u = rng.standard_normal(6)
    pairs = list(itertools.combinations(range(6), 2))
    left = Units.of([u[a] + u[b] + 0.2 + 0.001 * rng.standard_normal() for a, b in pairs], pairs)
    right = Units.of([u[a] + u[b] for a, b in pairs], pairs)
    joint = multi_bootstrap({"l": left, "r": right}, S.difference("l", "r"))
    assert joint.value == pytest.approx(0.2, abs=0.01) and joint.ci_high - joint.ci_low < 0.01
    apart = multi_bootstrap({"l": left, "r": right}, S.difference("l", "r"), method="pair_percentile")
    assert apart.ci_high - apart.ci_low > 10 * (joint.ci_high - joint.ci_low)


def test_seeds_needed_is_the_first_seed_count_whose_interval_clears_the_threshold():
    iv = Interval(0.05, -0.02, 0.12, 0.02, 3, 3)
    need = seeds_needed(iv, 0.0)
    half = lambda s: sps.t.ppf(0.975, s - 1) * 0.02 * np.sqrt(3 / s)  # noqa: E731
    assert half(need) < 0.05 <= half(need - 1)
    assert seeds_needed(iv, 0.05) == np.inf and np.isnan(seeds_needed(Interval(0.05, 0.05, 0.05, np.nan, 2, 1), 0))
    assert seeds_needed(Interval(0.5, 0.49, 0.51, 0.001, 10, 45), 0.0) == S.MIN_SEEDS


def test_unit_labels_of_pairs_data_order_pairs_and_networks():
    frame = pd.DataFrame({"seed_a": [0, 0, 0], "seed_b": [1, 0, 0], "order_seed_a": [0, 0, 0],
                          "order_seed_b": [1, 2, 0]})
    assert S.unit_labels(frame) == ((0, 1), (2,), (0,))
    nets = pd.DataFrame({"seed": [0, 0, 1], "order_seed": [0, 2, 1]})
    assert S.unit_labels(nets) == ((0,), (2,), (1,))


def test_summarise_bands_resample_seeds_like_the_findings():
    """The figures' bands: 3 seeds' pairs per width give a band; one pair gives none."""
    rows = [{"width": w, "seed_a": a, "seed_b": b, "layer": layer, "value": 0.5 + 0.01 * (a + b) + 0.1 * layer}
            for w in (8, 16) for a, b in itertools.combinations(range(3), 2) for layer in (0, 1)]
    frame = pd.DataFrame(rows)
    out = S.summarise(frame, ["width"])
    assert (out["n"] == 3).all() and (out["ci_high"] > out["ci_low"]).all()
    per_pair = frame.groupby(["seed_a", "seed_b"])["value"].mean()
    iv = multi_bootstrap(Units.of(per_pair.to_numpy(), list(per_pair.index)))
    assert out["ci_low"].iloc[0] == pytest.approx(iv.ci_low) and out["mean"].iloc[0] == pytest.approx(iv.value)
    one = S.summarise(frame[(frame["seed_a"] == 0) & (frame["seed_b"] == 1)], ["width"])
    assert (one["ci_low"] == one["mean"]).all() and (one["ci_high"] == one["mean"]).all()


def test_summarise_bands_include_the_examples_where_rows_have_replicates():
    rng = np.random.default_rng(3)
    rows = [{"width": 8, "seed_a": a, "seed_b": b, "value": 0.5 + 0.001 * (a + b)}
            for a, b in itertools.combinations(range(4), 2)]
    frame = pd.DataFrame(rows)
    shared = rng.standard_normal(8)               # the same images' luck in every pair
    jk = frame["value"].to_numpy()[:, None] - 0.05 * (shared - shared.mean()) / 7
    with_jk = frame.assign(**{f"jk_{b}": jk[:, b] for b in range(8)})
    quiet, noisy = S.summarise(frame, ["width"]), S.summarise(with_jk, ["width"])
    assert noisy["mean"].iloc[0] == pytest.approx(quiet["mean"].iloc[0])
    assert noisy["ci_high"].iloc[0] - noisy["ci_low"].iloc[0] > 3 * (quiet["ci_high"].iloc[0] - quiet["ci_low"].iloc[0])
