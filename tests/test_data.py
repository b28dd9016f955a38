"""Datasets: shapes, fixed and recorded splits, standardisation, no network, CIFAR via torchvision."""

from __future__ import annotations

import hashlib
import json
import pickle
import random
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from convergent import data as D


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails loudly."""
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset"):
        D.load_dataset("mnist")


# --- digits -------------------------------------------------------------------------------

def test_digits_shapes_and_split(no_network):
    d = D.load_dataset("digits", split_seed=0, test_fraction=0.2)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert d.input_shape == (1, 8, 8) and d.num_classes == 10
    assert d.x_train.shape == (1437, 1, 8, 8) and d.x_test.shape == (360, 1, 8, 8)
    assert d.n_train + d.n_test == 1797
    # stratified: every class in the test set in proportion (± 1 sample)
    counts = np.bincount(d.y_test.numpy(), minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    info = d.info
    assert info["split_seed"] == 0 and info["test_fraction"] == 0.2
    assert info["n_train"] == 1437 and info["n_test"] == 360
    json.dumps(info)  # plain JSON


def test_digits_split_is_fixed_by_seed():
    a = D.load_dataset("digits", split_seed=3)
    b = D.load_dataset("digits", split_seed=3)
    c = D.load_dataset("digits", split_seed=4)
    assert a.info["fingerprint"] == b.info["fingerprint"]
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.info["fingerprint"] != c.info["fingerprint"]
    assert a.info["train_index_sha"] != c.info["train_index_sha"]


def test_standardisation_uses_training_statistics():
    d = D.load_dataset("digits")
    x = d.x_train.double()
    assert abs(float(x.mean())) < 1e-5
    assert abs(float(x.std(unbiased=False)) - 1.0) < 1e-5
    # the test set is transformed with the *training* mean/std recorded in info
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    bunch = load_digits()
    _, te = train_test_split(np.arange(1797), test_size=0.2, stratify=bunch.target, random_state=0)
    mean, std = d.info["normalisation"]["mean"][0], d.info["normalisation"]["std"][0]
    np.testing.assert_allclose(d.x_test.double().numpy()[:, 0] * std + mean, bunch.images[te], atol=1e-4)
    np.testing.assert_array_equal(d.y_test.numpy(), bunch.target[te])


def test_max_train_is_a_prefix():
    full = D.load_dataset("digits")
    small = D.load_dataset("digits", max_train=100, max_test=50)
    assert small.n_train == 100 and small.n_test == 50
    assert torch.equal(small.y_train, full.y_train[:100])
    assert small.info["max_train"] == 100
    # statistics come from the 100 rows actually used
    assert abs(float(small.x_train.mean())) < 1e-5


def test_channel_stats_per_channel():
    x = np.stack([np.full((5, 4, 4), 2.0), np.arange(5 * 16, dtype=float).reshape(5, 4, 4)], axis=1)
    mean, std = D.channel_stats(x)
    assert mean.shape == (2,) and std[0] == 1.0  # constant channel: unscaled, not divided by 0
    z = D.standardise(x, mean, std)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z[:, 1].mean(), 0, atol=1e-6)
    np.testing.assert_allclose(z[:, 1].std(), 1, atol=1e-6)


# --- MNIST-1D -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mnist1d_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("mnist1d-cache")


def test_mnist1d_generated_offline(no_network, tmp_path, monkeypatch, mnist1d_cache):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # the package's get_dataset would drop a pickle here
    py_state, np_state = random.getstate(), np.random.get_state()
    d = D.load_dataset("mnist1d", data_dir=mnist1d_cache)
    assert list(cwd.iterdir()) == []
    assert [p.suffix for p in mnist1d_cache.iterdir()] == [".npz"]  # only the cache, no temp left
    # the package seeds the global generators; we must have restored them
    assert random.getstate() == py_state
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), np_state))
    assert d.input_shape == (1, 40) and d.num_classes == 10
    assert d.x_train.shape == (4000, 1, 40) and d.x_test.shape == (1000, 1, 40)
    assert set(d.y_train.unique().tolist()) == set(range(10))
    assert d.info["generator_args"]["seed"] == 42

    again = D.load_dataset("mnist1d", data_dir=mnist1d_cache)  # from the cache
    assert "cache" in again.info["source"]
    assert again.info["fingerprint"] == d.info["fingerprint"]


# --- CIFAR through the real torchvision reader ---------------------------------------------

def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _dump(path: Path, obj) -> str:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)
    return _md5(path)


def make_fake_cifar(root: Path, name: str, monkeypatch, n_per_file: int = 6, seed: int = 0
                    ) -> dict[str, np.ndarray]:
    """Write a tiny CIFAR-10/100 in torchvision's python-pickle layout under ``root``.

    torchvision verifies each file's md5 against constants on the class; the test
    points those constants at our files (and only for this test, via monkeypatch), so
    the unmodified reader code runs on them. Returns the raw arrays written.
    """
    from torchvision.datasets import CIFAR10, CIFAR100

    rng = np.random.default_rng(seed)
    cls = CIFAR10 if name == "cifar10" else CIFAR100
    ncls = 10 if name == "cifar10" else 100
    label_key = "labels" if name == "cifar10" else "fine_labels"
    folder = root / cls.base_folder
    folder.mkdir(parents=True)

    def batch(n):
        return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), rng.integers(0, ncls, size=n).tolist()

    train_names = [f"data_batch_{i}" for i in range(1, 6)] if name == "cifar10" else ["train"]
    test_names = ["test_batch"] if name == "cifar10" else ["test"]
    written = {"x_train": [], "y_train": [], "x_test": [], "y_test": []}
    lists = {}
    for split, names in (("train", train_names), ("test", test_names)):
        entries = []
        for fname in names:
            x, y = batch(n_per_file)
            entries.append([fname, _dump(folder / fname, {"data": x, label_key: y, "batch_label": fname})])
            written[f"x_{split}"].append(x)
            written[f"y_{split}"].append(np.array(y))
        lists[split] = entries
    meta_name, meta_key = cls.meta["filename"], cls.meta["key"]
    meta_md5 = _dump(folder / meta_name, {meta_key: [f"class{i}" for i in range(ncls)]})
    monkeypatch.setattr(cls, "train_list", lists["train"])
    monkeypatch.setattr(cls, "test_list", lists["test"])
    monkeypatch.setattr(cls, "meta", {"filename": meta_name, "key": meta_key, "md5": meta_md5})
    return {k: np.concatenate(v) for k, v in written.items()}


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_from_fake_directory(name, tmp_path, monkeypatch, no_network):
    raw = make_fake_cifar(tmp_path, name, monkeypatch)
    d = D.load_dataset(name, data_dir=tmp_path)
    n_train = 30 if name == "cifar10" else 6
    assert d.x_train.shape == (n_train, 3, 32, 32) and d.x_test.shape == (6, 3, 32, 32)
    assert d.input_shape == (3, 32, 32)
    assert d.num_classes == (10 if name == "cifar10" else 100)
    np.testing.assert_array_equal(d.y_train.numpy(), raw["y_train"])
    np.testing.assert_array_equal(d.y_test.numpy(), raw["y_test"])
    # undo the standardisation: the CHW pixels we wrote, scaled to [0, 1]
    mean = np.array(d.info["normalisation"]["mean"]).reshape(1, 3, 1, 1)
    std = np.array(d.info["normalisation"]["std"]).reshape(1, 3, 1, 1)
    expect = raw["x_test"].reshape(-1, 3, 32, 32) / 255.0
    np.testing.assert_allclose(d.x_test.double().numpy() * std + mean, expect, atol=1e-5)
    per_channel = d.x_train.double().mean(dim=(0, 2, 3))
    assert per_channel.abs().max() < 1e-5
    assert d.info["split"] == "official train/test"


def test_cifar_missing_names_data_dir(tmp_path, no_network):
    where = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        D.load_dataset("cifar10", data_dir=where)
    with pytest.raises(FileNotFoundError, match="data_dir"):
        D.load_dataset("cifar100", data_dir=None)
