"""Forward-pass helpers of the weight-space experiments: batch size, per-image results, subsets."""

import numpy as np
import pytest
import torch

from convergent.nets.data import load_dataset
from convergent.nets.models import build_model
from convergent.nets.train import evaluate
from convergent.weights.evaluation import (auto_batch_size, largest_activation_bytes, per_image,
                                           resolve_batch_size, subset_indices, take)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", max_train=300, max_test=150)


def test_largest_activation_is_the_widest_map():
    net = build_model("cnn", 8, (3, 32, 32), 10, {"depth": 2, "batchnorm": True})
    # conv1: 8 channels at 32×32 float32 is the largest output of any leaf module
    assert largest_activation_bytes(net, (3, 32, 32)) == 8 * 32 * 32 * 4


def test_auto_batch_size_keeps_a_batch_within_the_budget():
    small = build_model("mlp", 16, (64,), 10, {"depth": 2})
    wide = build_model("wrn", 4, (3, 32, 32), 10, {"depth": 10})
    per_image_wide = largest_activation_bytes(wide, (3, 32, 32))
    size = auto_batch_size(wide, (3, 32, 32), budget=8 << 20)
    assert size & (size - 1) == 0 and 16 <= size <= 1024
    assert size * per_image_wide <= 8 << 20 < 2 * size * per_image_wide   # the largest power of two that fits
    assert auto_batch_size(small, (64,)) == 1024                          # tiny activations: the cap
    assert auto_batch_size(wide, (3, 32, 32), budget=1) == 16             # never below the floor
    assert resolve_batch_size(100, wide, (3, 32, 32)) == 100
    with pytest.raises(ValueError, match="positive integer or 'auto'"):
        resolve_batch_size(0, wide, (3, 32, 32))


def test_per_image_means_are_evaluate_and_batch_size_changes_nothing(digits):
    torch.manual_seed(0)
    net = build_model("cnn", 4, digits.input_shape, digits.num_classes, {"depth": 2, "batchnorm": True})
    loss, acc = evaluate(net, digits.x_test, digits.y_test, 1024)
    l1, c1 = per_image(net, digits.x_test, digits.y_test, 1024)
    l2, c2 = per_image(net, digits.x_test, digits.y_test, 7)
    assert l1.dtype == np.float64 and c1.dtype == bool and len(l1) == len(digits.y_test)
    assert l1.mean() == pytest.approx(loss, rel=1e-6) and c1.mean() == acc
    np.testing.assert_allclose(l1, l2, rtol=1e-5, atol=1e-6)
    assert (c1 == c2).all()
    assert net.training   # the mode is restored


def test_subsets_are_fixed_sorted_and_distinct_per_seed():
    a = subset_indices(100, 10, [0, 1])
    np.testing.assert_array_equal(a, subset_indices(100, 10, [0, 1]))
    assert (np.diff(a) > 0).all() and len(a) == 10 and a.max() < 100
    assert not np.array_equal(a, subset_indices(100, 10, [0, 2]))
    assert subset_indices(100, None, 0) is None and subset_indices(100, 100, 0) is None
    x = torch.arange(100)
    assert take(x, None) is x and take(x, a).tolist() == a.tolist()
    with pytest.raises(ValueError, match="at least 2"):
        subset_indices(100, 1, 0)


@pytest.mark.parametrize("n, batch, single_first, sizes", [
    (10, 4, False, [4, 4, 2]),   # a trailing batch of two runs
    (9, 4, False, [4, 4]),       # a trailing batch of one ends the pass
    (9, 4, True, [4, 4]),        # ... whatever single_first says
    (1, 4, False, []),           # BatchNorm's reset: one image is no batch
    (1, 4, True, [1]),           # REPAIR's statistics: a one-image input still runs
    (3, 1, True, [1]),
])
def test_forward_batches_pushes_consecutive_batches_and_drops_a_batch_of_one(n, batch, single_first, sizes):
    from convergent.weights.evaluation import forward_batches

    seen = []
    model = torch.nn.Linear(2, 1)
    model.register_forward_hook(lambda _m, inp, _out: seen.append(inp[0].clone()))
    x = torch.arange(2 * n, dtype=torch.float32).reshape(n, 2)
    forward_batches(model, x, batch, single_first=single_first)
    assert [len(b) for b in seen] == sizes
    if seen:   # consecutive rows, in order, unchanged
        assert torch.equal(torch.cat(seen), x[: sum(sizes)])
