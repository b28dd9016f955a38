"""Linear mode connectivity: exact endpoints, zero self-barrier, BN reset, REPAIR, not-applicable
rows, every variant on residual nets."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from convergent.data import load_dataset
from convergent.models import build_model
from convergent.train import TrainConfig, evaluate, set_determinism, train
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
