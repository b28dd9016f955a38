"""Rotation test: identity is a no-op; a linear net recovers from any rotation."""

import numpy as np
import pytest
import torch

from convergent.data import load_dataset
from convergent.models import build_model
from convergent.train import TrainConfig, set_determinism, train
from convergent.weights.rotation import insert_rotation, random_rotation, rotation_path, rotation_test


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", max_train=600, max_test=300)


def _trained(arch, opts, width, data, tmp_path, epochs=8):
    set_determinism(0)
    model = build_model(arch, width, data.input_shape, data.num_classes, opts)
    train(model, data, TrainConfig(epochs=epochs, batch_size=32, lr=0.02, weight_decay=0.0), seed=0,
          frozen_k=0, log_path=tmp_path / "log.csv", log=lambda s: None)
    return model


def test_rotations_are_orthogonal():
    for R in (random_rotation(7, 0), rotation_path(7, 0.3, 0)):
        np.testing.assert_allclose(R @ R.T, np.eye(7), atol=1e-10)
        assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(rotation_path(5, 0.0, 1), np.eye(5))
    np.testing.assert_array_equal(random_rotation(6, 3), random_rotation(6, 3))


@pytest.mark.parametrize("arch,opts,width", [("mlp", {"depth": 2}, 16),
                                              ("cnn", {"depth": 2, "batchnorm": True}, 4)])
def test_identity_rotation_changes_nothing(arch, opts, width, digits, tmp_path):
    model = _trained(arch, opts, width, digits, tmp_path, epochs=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = rotation_test(model, digits, model.layer_names[0], np.eye(width), retrain_epochs=1, lr=0.01, seed=0)
    assert res["rotation_identity"]
    assert res["rotated_test_acc"] == res["original_test_acc"]
    assert res["rotated_test_loss"] == pytest.approx(res["original_test_loss"], rel=1e-6)
    for k, v in model.state_dict().items():  # the input model is untouched
        assert torch.equal(v, before[k])


def test_rotation_frozen_below_and_applied(digits, tmp_path):
    model = _trained("mlp", {"depth": 2}, 16, digits, tmp_path, epochs=2)
    R = random_rotation(16, 0)
    net = insert_rotation(model, "fc1", R)
    with torch.no_grad():
        h = model.layers[0].linear(model.layers[0].pre(digits.x_test[:5]))
        got = net.forward_layers(digits.x_test[:5], 1)
    torch.testing.assert_close(got, torch.relu(h @ torch.as_tensor(R, dtype=torch.float32)))


def test_linear_net_recovers_from_rotation(digits, tmp_path):
    model = _trained("mlp", {"depth": 2, "linear": True}, 16, digits, tmp_path)
    res = rotation_test(model, digits, "fc1", random_rotation(16, 1), retrain_epochs=8, lr=0.02, seed=0,
                        cfg={"weight_decay": 0.0, "batch_size": 32})
    assert res["original_test_acc"] > 0.8
    assert res["rotated_test_acc"] < res["original_test_acc"] - 0.1  # the rotation did hurt
    assert res["retrained_test_acc"] >= res["original_test_acc"] - 0.03
