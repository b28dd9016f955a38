"""Permutations preserve the function; planted permutations are recovered by both matchers."""

import numpy as np
import pytest
import torch

from convergent.data import load_dataset
from convergent.models import build_model
from convergent.train import TrainConfig, set_determinism, train
from convergent.weights.permute import (activation_matching, apply_permutation, invert_permutation,
                                        layer_correlations, permutation_spec, random_permutations,
                                        weight_matching)

ARCHS = [("mlp", {"depth": 2}, 16), ("cnn", {"depth": 3, "batchnorm": False}, 4),
         ("cnn", {"depth": 3, "batchnorm": True}, 4)]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", max_train=400, max_test=200)


def _trained(arch, opts, width, data, tmp_path, epochs=2, seed=0):
    set_determinism(seed)
    model = build_model(arch, width, data.input_shape, data.num_classes, opts)
    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=0.05)
    train(model, data, cfg, seed=seed, frozen_k=0, log_path=tmp_path / f"log{seed}.csv", log=lambda s: None)
    model.eval()
    return model


@pytest.mark.parametrize("arch,opts,width", ARCHS)
def test_permuted_net_same_function(arch, opts, width, digits, tmp_path):
    model = _trained(arch, opts, width, digits, tmp_path)
    x = digits.x_test
    with torch.no_grad():
        ref = model(x)
        perms = random_permutations(model, seed=1)
        permuted = apply_permutation(model.state_dict(), model, perms)
        original = {k: v.clone() for k, v in model.state_dict().items()}
        model.load_state_dict(permuted)
        out = model(x)
    changed = [k for k in permuted if not torch.equal(permuted[k], original[k])]
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    moved = [n for n, p in perms.items() if not np.array_equal(p, np.arange(len(p)))]
    assert moved and changed  # vacuous if every permutation happened to be the identity


@pytest.mark.parametrize("arch,opts,width", ARCHS)
def test_planted_permutation_recovered(arch, opts, width, digits, tmp_path):
    model = _trained(arch, opts, width, digits, tmp_path)
    state_a = {k: v.clone() for k, v in model.state_dict().items()}
    planted = random_permutations(model, seed=7)
    # B is A with its units shuffled by the inverse: matching B onto A must return `planted`
    state_b = apply_permutation(state_a, model, {n: invert_permutation(p) for n, p in planted.items()})

    wm = weight_matching(state_a, state_b, model, seed=3)
    for name in planted:
        np.testing.assert_array_equal(wm[name], planted[name], err_msg=f"weight matching, {name}")

    model_b = build_model(arch, width, digits.input_shape, digits.num_classes, opts)
    model_b.load_state_dict(state_b)
    model_b.eval()
    am = activation_matching(model, model_b, digits.x_train)
    corrs = layer_correlations(model, model, digits.x_train)
    for name in planted:
        alive = np.diag(corrs[name]) > 0.5  # dead units correlate 0 with everything: arbitrary
        assert alive.sum() >= len(alive) // 2
        np.testing.assert_array_equal(am[name][alive], planted[name][alive], err_msg=f"activation, {name}")
    # the matched B is A again, bit for bit on weights of alive units (all units for WM)
    back = apply_permutation(state_b, model, wm)
    for k in state_a:
        torch.testing.assert_close(back[k], state_a[k], rtol=0, atol=0)


def test_resnet_not_implemented():
    model = build_model("resnet18", 4, (3, 8, 8), 10)
    with pytest.raises(NotImplementedError, match="residual"):
        permutation_spec(model)
