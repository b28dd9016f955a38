"""Linear mode connectivity: exact endpoints, zero self-barrier, BN reset, not-applicable rows."""

import numpy as np
import pandas as pd
import pytest
import torch

from convergent.data import load_dataset
from convergent.models import build_model
from convergent.train import TrainConfig, evaluate, set_determinism, train
from convergent.weights.lmc import (BARRIER_COLUMNS, CURVE_COLUMNS, VARIANTS, barriers, interpolate,
                                    lmc_curve, lmc_pair, reset_bn_stats)

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
            assert row.loss == loss and row.acc == acc  # exact, not approximate
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
    assert set(ok.variant) == {"naive", "permuted_activation", "permuted_weight"}
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
