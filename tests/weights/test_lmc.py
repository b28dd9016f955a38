"""Linear mode connectivity: exact endpoints, zero self-barrier, BN reset, REPAIR, not-applicable
rows, every variant on residual nets."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from convergent.nets.data import load_dataset
from convergent.nets.models import build_model
from convergent.nets.train import TrainConfig, evaluate, set_determinism, train
from convergent.weights.lmc import (BARRIER_COLUMNS, CURVE_COLUMNS, VARIANTS, barriers, interpolate,
                                    lmc_curve, lmc_pair, reset_bn_stats)
from convergent.weights.repair import channel_stats, endpoint_stats, interpolate_stats, repair_points, repaired

ALPHAS = np.linspace(0, 1, 5)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", max_train=400, max_test=200)


def _trained(arch, opts, width, data, tmp_path, seed):
    set_determinism(seed)
    model = build_model(arch, width, data.input_shape, data.num_classes, opts)
    train(model, data, TrainConfig(epochs=2, batch_size=64, lr=0.05), seed=seed, frozen_k=0,
          log_path=tmp_path / f"log{seed}.csv", log=lambda s: None)
    return model, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def bn_pair(digits, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lmc")
    model, sa = _trained("cnn", {"depth": 3, "batchnorm": True}, 4, digits, tmp, seed=0)
    _, sb = _trained("cnn", {"depth": 3, "batchnorm": True}, 4, digits, tmp, seed=1)
    return model, sa, sb


def test_interpolate_endpoints_and_int_buffers(bn_pair):
    _, sa, sb = bn_pair
    sb = {k: (v + 5 if not v.is_floating_point() else v) for k, v in sb.items()}
    for k, v in interpolate(sa, sb, 0.0).items():
        assert torch.equal(v, sa[k])
    mid = interpolate(sa, sb, 0.5)
    for k, v in interpolate(sa, sb, 1.0).items():
        assert torch.equal(v, sb[k] if sa[k].is_floating_point() else sa[k])  # ints come from A
    torch.testing.assert_close(mid["layers.0.linear.weight"],
                               0.5 * (sa["layers.0.linear.weight"] + sb["layers.0.linear.weight"]))


def test_endpoints_reproduce_own_metrics(bn_pair, digits):
    model, sa, sb = bn_pair
    curve = lmc_curve(model, sa, sb, digits, ALPHAS, "naive")
    assert list(curve.columns) == list(CURVE_COLUMNS)
    for state, alpha in ((sa, 0.0), (sb, 1.0)):
        model.load_state_dict(state)
        for split in ("train", "test"):
            loss, acc = evaluate(model, *digits.split(split))
            row = curve[(curve.alpha == alpha) & (curve.split == split)].iloc[0]
            # the same network: per-image losses summed in float64 instead of per-batch float32 sums
            assert row.loss == pytest.approx(loss, rel=1e-6) and row.acc == acc
    # permuted B computes B's function: its endpoint matches up to rounding
    pc = lmc_curve(model, sa, sb, digits, ALPHAS, "permuted_weight")
    end = pc[pc.alpha == 1.0].set_index("split")
    ref = curve[curve.alpha == 1.0].set_index("split")
    np.testing.assert_allclose(end.loss, ref.loss, rtol=1e-5)
    np.testing.assert_allclose(end.acc, ref.acc, atol=1.5 / len(digits.y_train))


def test_self_barrier_is_zero(bn_pair, digits):
    model, sa, _ = bn_pair
    curve, bar, _ = lmc_pair(model, sa, sa, digits, ALPHAS, variants=("naive", "permuted_weight",
                                                                      "permuted_activation"))
    assert list(bar.columns) == list(BARRIER_COLUMNS)
    assert len(bar) == 6
    np.testing.assert_allclose(bar.loss_barrier, 0, atol=1e-6)
    np.testing.assert_allclose(bar.error_barrier, 0, atol=1e-12)
    np.testing.assert_allclose(bar.loss_mid_excess, 0, atol=1e-6)


def test_bn_reset_changes_stats(bn_pair, digits):
    model, sa, sb = bn_pair
    net = build_model("cnn", 4, digits.input_shape, digits.num_classes, {"depth": 3, "batchnorm": True})
    mid = interpolate(sa, sb, 0.5)
    net.load_state_dict(mid)
    net.train(False)
    reset_bn_stats(net, digits.x_train)
    assert not net.training
    after = net.state_dict()
    assert not torch.allclose(after["layers.0.norm.running_var"], mid["layers.0.norm.running_var"])
    # momentum restored, and the reset stats are the data's per-channel batch statistics
    assert net.layers[0].norm.momentum == 0.1
    with torch.no_grad():
        h = net.layers[0].linear(digits.x_train)
    torch.testing.assert_close(after["layers.0.norm.running_mean"], h.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    naive = lmc_curve(model, sa, sb, digits, [0.0, 0.5, 1.0], "naive")
    reset = lmc_curve(model, sa, sb, digits, [0.0, 0.5, 1.0], "bn_reset")
    assert reset.applicable.all()
    assert not np.allclose(naive.loss, reset.loss)


def test_no_batchnorm_not_applicable(digits, tmp_path):
    model, sa = _trained("mlp", {"depth": 2}, 16, digits, tmp_path, seed=0)
    _, sb = _trained("mlp", {"depth": 2}, 16, digits, tmp_path, seed=1)
    curve, bar, timings = lmc_pair(model, sa, sb, digits, ALPHAS)
    assert set(curve.variant) == set(VARIANTS)
    na = curve[curve.variant.str.endswith("bn_reset")]
    assert not na.applicable.any() and na.loss.isna().all()
    ok = bar[bar.applicable]
    assert set(ok.variant) == {"naive", "permuted_activation", "permuted_weight", "repair",
                               "permuted_activation_repair", "permuted_weight_repair"}
    assert (ok.loss_barrier >= 0).all() and ok.loss_barrier.notna().all()
    assert bar[~bar.applicable].loss_barrier.isna().all()
    assert {"match_weight", "match_activation"} <= set(timings)


def test_barrier_definition():
    curve = pd.DataFrame({"variant": "naive", "split": "test", "alpha": [0, 0.5, 1.0],
                          "loss": [1.0, 3.0, 2.0], "acc": [0.9, 0.5, 0.8], "applicable": True})
    curve["error"] = 1 - curve.acc
    row = barriers(curve).iloc[0]
    assert row.loss_barrier == pytest.approx(1.5) and row.loss_barrier_alpha == 0.5
    assert row.error_barrier == pytest.approx(0.35) and row.error_mid == pytest.approx(0.5)


@pytest.mark.parametrize("arch,opts,width", [("resnet18", {}, 2), ("wrn", {"depth": 10}, 1)])
def test_resnet_pair_every_variant(arch, opts, width, digits):
    """Every variant runs on a (tiny, untrained) residual pair; permuting B does not change
    B's function, so each permuted variant's endpoints equal its unpermuted counterpart's."""
    digits = dataclasses.replace(digits, x_train=digits.x_train[:128], y_train=digits.y_train[:128],
                                 x_test=digits.x_test[:64], y_test=digits.y_test[:64])  # speed
    states = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build_model(arch, width, digits.input_shape, digits.num_classes, opts)
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    alphas = [0.0, 0.5, 1.0]
    curve, bar, timings = lmc_pair(model, states[0], states[1], digits, alphas)
    assert set(curve.variant) == set(VARIANTS) and curve.applicable.all() and bar.applicable.all()
    assert len(curve) == len(VARIANTS) * len(alphas) * 2 and curve.loss.notna().all()
    assert {"match_weight", "match_activation"} <= set(timings)
    c = curve.set_index(["variant", "alpha", "split"]).sort_index()
    for method in ("activation", "weight"):
        for base in ("naive", "bn_reset", "repair"):
            perm = f"permuted_{method}" + ("" if base == "naive" else f"_{base}")
            for alpha in (0.0, 1.0):
                np.testing.assert_allclose(c.loc[(perm, alpha)].loss, c.loc[(base, alpha)].loss, rtol=1e-5,
                                           err_msg=f"{perm} vs {base} at {alpha}")
    # not vacuous: matching moved units, so the permuted midpoint differs
    assert not np.allclose(c.loc[("permuted_weight", 0.5)].loss, c.loc[("naive", 0.5)].loss)


def test_repair_sets_target_statistics(bn_pair, digits):
    """After REPAIR, every repair point of θ(0.5) has the interpolated endpoint statistics."""
    model, sa, sb = bn_pair
    net = build_model("cnn", 4, digits.input_shape, digits.num_classes, {"depth": 3, "batchnorm": True})
    assert repair_points(net) == ["layers.0.norm", "layers.1.norm", "layers.2.norm"]
    stats_a, stats_b = endpoint_stats(net, sa, sb, digits.x_train)
    targets = interpolate_stats(stats_a, stats_b, 0.5)
    net.load_state_dict(interpolate(sa, sb, 0.5))
    before = channel_stats(net, digits.x_train)
    # a single batch: the calibration statistics are the final ones, so the means are exact
    # up to float32 and the stds up to BatchNorm's eps (σ = sqrt(var + 1e-5) on both sides)
    with repaired(net, targets, digits.x_train):
        after = channel_stats(net, digits.x_train)
    for p, (mean, std) in targets.items():
        torch.testing.assert_close(after[p][0], mean, rtol=0, atol=1e-5 * float(std.mean()))
        torch.testing.assert_close(after[p][1], std, rtol=1e-4, atol=0)
    assert not torch.allclose(before["layers.2.norm"][1], targets["layers.2.norm"][1], rtol=1e-2)
    after_exit = channel_stats(net, digits.x_train)  # hooks are removed on exit
    torch.testing.assert_close(after_exit["layers.2.norm"][1], before["layers.2.norm"][1])


def test_repair_self_pair_and_endpoints(digits, tmp_path):
    """No-BN net: REPAIR applies; endpoints equal naive exactly; a net with itself has no barrier."""
    model, sa = _trained("mlp", {"depth": 2}, 16, digits, tmp_path, seed=0)
    _, sb = _trained("mlp", {"depth": 2}, 16, digits, tmp_path, seed=1)
    assert repair_points(model) == ["layers.0.linear", "layers.1.linear"]
    naive = lmc_curve(model, sa, sb, digits, ALPHAS, "naive")
    rep = lmc_curve(model, sa, sb, digits, ALPHAS, "repair")
    assert rep.applicable.all()
    ends = naive.alpha.isin([0.0, 1.0])
    assert (rep[ends].loss.to_numpy() == naive[ends].loss.to_numpy()).all()
    assert not np.allclose(rep[~ends].loss, naive[~ends].loss)
    _, bar, _ = lmc_pair(model, sa, sa, digits, ALPHAS, variants=("repair",))
    np.testing.assert_allclose(bar.loss_barrier, 0, atol=1e-5)


# --- the cost options (EvalOptions): what each one changes, and what it must not ---------------

from convergent.weights.lmc import EvalOptions, _barrier_se, coarse_grid, refine_grid  # noqa: E402


def test_memo_shares_endpoints_without_changing_a_number(bn_pair, digits):
    """Evaluating the endpoints once per job (memo) gives the same curve as evaluating them per
    variant; the second pair reuses A's endpoint rows (keyed by name) exactly."""
    model, sa, sb = bn_pair
    variants = ("naive", "bn_reset", "permuted_weight")
    alone = pd.concat([lmc_curve(model, sa, sb, digits, ALPHAS, v) for v in variants], ignore_index=True)
    memo = {}
    shared, _, _ = lmc_pair(model, sa, sb, digits, ALPHAS, variants, names=("a", "b"), memo=memo)
    assert {k[:2] for k in memo} == {("a", "plain"), ("b", "plain"), ("a", "bn_reset"), ("b", "bn_reset")}
    cols = ["loss", "acc"]
    np.testing.assert_allclose(shared[cols].to_numpy(), alone[cols].to_numpy(), rtol=1e-5, atol=1e-7)
    # A again against another network: its α = 0 rows come from the memo, identical to the first pair's
    again, _, _ = lmc_pair(model, sa, sa, digits, ALPHAS, ("naive",), names=("a", "a2"), memo=memo)
    first = shared[(shared.variant == "naive") & (shared.alpha == 0.0)].reset_index(drop=True)
    second = again[again.alpha == 0.0].reset_index(drop=True)
    assert (first[cols] == second[cols]).all().all()


def test_subsets_set_n_images_and_the_full_options_are_the_default(bn_pair, digits):
    model, sa, sb = bn_pair
    full = lmc_curve(model, sa, sb, digits, ALPHAS, "bn_reset")
    assert (full.n_images == np.where(full.split == "train", len(digits.y_train), len(digits.y_test))).all()
    opts = EvalOptions(train_samples=100, test_samples=80, calib_samples=50)
    sub = lmc_curve(model, sa, sb, digits, ALPHAS, "bn_reset", options=opts)
    assert (sub.n_images == np.where(sub.split == "train", 100, 80)).all()
    assert not np.allclose(sub.loss, full.loss)          # other images, other statistics
    np.testing.assert_allclose(sub.loss, full.loss, atol=0.5)  # but the same networks


def test_barrier_standard_error_is_that_of_the_paired_per_image_excess():
    rng = np.random.default_rng(0)
    f0, f1, fm = rng.random(50), rng.random(50), rng.random(50) + 0.5
    e = fm - 0.5 * (f0 + f1)
    assert _barrier_se({0.0: f0, 0.5: fm, 1.0: f1}, 0.5) == pytest.approx(e.std(ddof=1) / np.sqrt(50))
    assert _barrier_se({0.0: f0, 1.0: f1}, 1.0) == 0.0        # at an endpoint the excess is 0
    assert np.isnan(_barrier_se({0.0: f0}, 0.5))


def test_barriers_report_se_from_lmc_pair(bn_pair, digits):
    model, sa, sb = bn_pair
    _, bar, _ = lmc_pair(model, sa, sb, digits, ALPHAS, ("naive",))
    assert bar.loss_barrier_se.notna().all() and (bar.loss_barrier_se > 0).all()
    assert (bar.n_images == [len(digits.y_train), len(digits.y_test)]).all()


def test_coarse_grid_keeps_endpoints_and_midpoint():
    assert coarse_grid(25, 7) == [0, 4, 8, 12, 16, 20, 24]
    assert coarse_grid(11, 4) == [0, 3, 5, 7, 10]       # 0.5 is on the 11-point grid: kept
    assert coarse_grid(5, 7) == [0, 1, 2, 3, 4] and coarse_grid(5, None) == [0, 1, 2, 3, 4]


def test_refinement_finds_the_full_grid_maximum_of_a_single_peak():
    alphas = np.linspace(0, 1, 25)
    f = np.exp(-((alphas - 0.37) / 0.15) ** 2)           # peak between coarse points 8 (0.333) and 12 (0.5)
    done = coarse_grid(25, 7)
    add = refine_grid(alphas, done, {"x": f[done]})
    assert add == [5, 6, 7, 9, 10, 11]                   # everything between the argmax's coarse neighbours
    full = f - ((1 - alphas) * f[0] + alphas * f[-1])
    both = sorted(done + add)
    assert (f - ((1 - alphas) * f[0] + alphas * f[-1]))[both].max() == full.max()
    assert refine_grid(alphas, done, {"flat": np.zeros(len(done))}) == []   # no excess, nothing to refine


def test_coarse_alphas_in_lmc_curve_evaluate_fewer_points_and_find_the_barrier(bn_pair, digits):
    model, sa, sb = bn_pair
    grid = np.linspace(0, 1, 13)
    full = barriers(lmc_curve(model, sa, sb, digits, grid, "naive"))
    coarse = lmc_curve(model, sa, sb, digits, grid, "naive", options=EvalOptions(coarse_alphas=4))
    bc = barriers(coarse)
    assert (bc.n_alphas < len(grid)).all() and (bc.n_alphas >= 4).all()
    assert set(coarse.alpha) <= set(grid)
    # the naive curve of two trained nets has one hump: refinement reaches the full-grid barrier
    np.testing.assert_allclose(bc.loss_barrier, full.loss_barrier, atol=1e-7)
