"""Permutations preserve the function; planted permutations are recovered by both matchers.

Residual nets are tiny and untrained (random init, random BatchNorm statistics and
affine parameters, float64, eval mode): the properties tested are algebraic.
"""

import numpy as np
import pytest
import torch
from torch import nn

from convergent.nets.data import load_dataset
from convergent.nets.models import build_model
from convergent.nets.train import TrainConfig, set_determinism, train
from convergent.weights.permute import (activation_matching, apply_permutation, group_correlations,
                                        invert_permutation, permutation_spec, random_permutations,
                                        weight_matching)

TRAINED = [("mlp", {"depth": 2}, 16), ("cnn", {"depth": 3, "batchnorm": False}, 4),
           ("cnn", {"depth": 3, "batchnorm": True}, 4)]
# resnet18 width 3: streams of 3, 6, 12, 24 channels; wrn-16-1: two blocks per stage, the
# first stage continuing the stem's stream through identity shortcuts; wrn-10-2: a
# shortcut conv already in the first stage
RANDOM = [("mlp", {"depth": 2}, 8), ("cnn", {"depth": 3, "batchnorm": True}, 3),
          ("resnet18", {}, 3), ("wrn", {"depth": 16}, 1), ("wrn", {"depth": 10}, 2)]
SHAPE = (1, 8, 8)


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


def random_net(arch, opts, width, seed=0):
    """Float64 net in eval mode whose BatchNorms have random statistics and affine maps
    (at init they are 0/1 everywhere, which would hide a missing BN entry in the spec)."""
    torch.manual_seed(seed)
    model = build_model(arch, width, SHAPE, 10, opts).double().eval()
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(0.2 * torch.randn(c, generator=g, dtype=torch.float64))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g, dtype=torch.float64))
                m.weight.copy_(0.5 + torch.rand(c, generator=g, dtype=torch.float64))
                m.bias.copy_(0.2 * torch.randn(c, generator=g, dtype=torch.float64))
    return model


def _x(n=48, seed=1):
    return torch.randn(n, *SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _not_identity(perms):
    return [n for n, p in perms.items() if not np.array_equal(p, np.arange(len(p)))]


def moving_permutations(model, seed):
    """:func:`random_permutations`, with any identity drawn replaced by a cyclic shift, so
    every group moves (a small group is often drawn as the identity, testing nothing)."""
    perms = random_permutations(model, seed)
    return {n: p if n in _not_identity({n: p}) else np.roll(p, 1) for n, p in perms.items()}


@pytest.mark.parametrize("arch,opts,width", RANDOM)
def test_spec_covers_every_hidden_axis(arch, opts, width):
    """Every tensor axis that carries hidden units is in exactly one group; the only axes
    left out are the data's input channels, kernel axes and the classifier's outputs."""
    model = random_net(arch, opts, width)
    spec = permutation_spec(model)
    claimed = {(k, a) for g in spec.values() for k, a in g.axes}
    assert len(claimed) == sum(len(g.axes) for g in spec.values())  # no axis claimed twice
    first = "layers.0.linear.weight"
    for key, t in model.state_dict().items():
        if not t.is_floating_point():
            continue
        for axis in range(t.dim()):
            if (key, axis) in claimed:
                continue
            assert axis >= 2 or (key == first and axis == 1) or key.startswith("head.linear"), (key, axis)
    if arch in ("resnet18", "wrn"):
        streams = [g for g in spec.values() if not g.name.endswith(".inner")]
        # every layer output probes exactly one stream; resnet18 and wrn-16-1 share streams
        assert sum(len(g.probes) for g in streams) == len(model.layer_names)
        assert len(streams) < len(model.layer_names) or (arch, width) == ("wrn", 2)
        assert all(len(spec[f"{n}.inner"].probes) == 1 for n in model.layer_names[1:])


@pytest.mark.parametrize("arch,opts,width", RANDOM)
def test_permuted_random_net_same_function(arch, opts, width):
    model = random_net(arch, opts, width)
    x = _x()
    perms = moving_permutations(model, seed=1)
    assert len(_not_identity(perms)) == len(perms)
    with torch.no_grad():
        ref = model(x)
        original = {k: v.clone() for k, v in model.state_dict().items()}
        permuted = apply_permutation(original, model, perms)
        model.load_state_dict(permuted)
        out = model(x)
    changed = [k for k in permuted if not torch.equal(permuted[k], original[k])]
    assert len(changed) > len(perms)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    # and each group on its own matters: permuting a single stream group alone is also exact
    name = next(n for n in perms if not n.endswith(".inner"))
    with torch.no_grad():
        model.load_state_dict(apply_permutation(original, model, {name: perms[name]}))
        torch.testing.assert_close(model(x), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("arch,opts,width", TRAINED)
def test_permuted_trained_net_same_function(arch, opts, width, digits, tmp_path):
    model = _trained(arch, opts, width, digits, tmp_path)
    x = digits.x_test
    with torch.no_grad():
        ref = model(x)
        perms = random_permutations(model, seed=1)
        model.load_state_dict(apply_permutation(model.state_dict(), model, perms))
        out = model(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert _not_identity(perms)


def _plant(model, seed=7):
    """B = A with every group shuffled by the inverse of ``planted``: matching B onto A
    must return ``planted``."""
    state_a = {k: v.clone() for k, v in model.state_dict().items()}
    planted = moving_permutations(model, seed=seed)
    state_b = apply_permutation(state_a, model, {n: invert_permutation(p) for n, p in planted.items()})
    return state_a, state_b, planted


def _check_activation_matching(model, state_b, planted, x):
    model_b = build_model(model.arch, model.width, model.input_shape, model.num_classes, model.options)
    model_b.load_state_dict(state_b)
    model_b.eval()
    am = activation_matching(model, model_b, x, batch_size=16)
    corrs = group_correlations(model, model, x)
    for name in planted:
        alive = np.diag(corrs[name]) > 0.5  # dead units correlate 0 with everything: arbitrary
        assert alive.sum() >= len(alive) // 2, name
        np.testing.assert_array_equal(am[name][alive], planted[name][alive], err_msg=f"activation, {name}")


@pytest.mark.parametrize("arch,opts,width", RANDOM)
def test_planted_permutation_recovered_random_net(arch, opts, width):
    model = random_net(arch, opts, width)
    state_a, state_b, planted = _plant(model)
    wm = weight_matching(state_a, state_b, model, seed=3)
    for name in planted:
        np.testing.assert_array_equal(wm[name], planted[name], err_msg=f"weight matching, {name}")
    back = apply_permutation(state_b, model, wm)
    for k in state_a:  # the matched B is A again, bit for bit
        torch.testing.assert_close(back[k], state_a[k], rtol=0, atol=0)
    # float32 from here: float64 convolutions on CPU are ~10× slower, and float32 suffices
    _check_activation_matching(model.float(), {k: v.float() if v.is_floating_point() else v
                                               for k, v in state_b.items()}, planted, _x(n=64).float())


@pytest.mark.parametrize("arch,opts,width", TRAINED)
def test_planted_permutation_recovered_trained(arch, opts, width, digits, tmp_path):
    model = _trained(arch, opts, width, digits, tmp_path)
    state_a, state_b, planted = _plant(model)
    wm = weight_matching(state_a, state_b, model, seed=3)
    for name in planted:
        np.testing.assert_array_equal(wm[name], planted[name], err_msg=f"weight matching, {name}")
    back = apply_permutation(state_b, model, wm)
    for k in state_a:
        torch.testing.assert_close(back[k], state_a[k], rtol=0, atol=0)
    _check_activation_matching(model, state_b, planted, digits.x_train)


def test_stream_correlation_is_mean_over_probes():
    """A residual stream's correlation averages its probes: self-correlation of an alive
    unit is 1 at every probe, so the stream's diagonal is 1 (dead units: 0)."""
    model = random_net("resnet18", {}, 3)
    spec = permutation_spec(model)
    corrs = group_correlations(model, model, _x(n=32), spec=spec)
    stem = corrs["stem"]
    assert len(spec["stem"].probes) == 3 and stem.shape == (3, 3)
    np.testing.assert_allclose(np.diag(stem)[np.diag(stem) > 0.5], 1.0, atol=1e-12)
    assert np.all(np.abs(stem) <= 1.0 + 1e-12)


def test_bad_permutation_rejected():
    model = random_net("wrn", {"depth": 10}, 1)
    with pytest.raises(KeyError, match="unknown groups"):
        apply_permutation(model.state_dict(), model, {"nope": np.arange(3)})
    with pytest.raises(ValueError, match="not a permutation"):
        apply_permutation(model.state_dict(), model, {"stem": np.zeros(16, dtype=np.int64)})
