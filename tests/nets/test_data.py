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

from convergent.nets import data as D


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



def _same_splits(a: D.DatasetSplits, b: D.DatasetSplits) -> None:
    for x, y in zip(a.split("train") + a.split("test"), b.split("train") + b.split("test")):
        assert x.dtype == y.dtype and torch.equal(x, y)
    assert json.dumps(a.info, sort_keys=True) == json.dumps(b.info, sort_keys=True)   # byte for byte


def test_digits_cache_gives_sklearns_arrays_and_info(tmp_path, no_network, monkeypatch):
    fresh = D.load_dataset("digits", split_seed=3)                     # no data_dir: no cache
    first = D.load_dataset("digits", data_dir=tmp_path, split_seed=3)  # writes the cache
    assert [p.name.startswith("digits-") and p.suffix == ".npz" for p in tmp_path.iterdir()] == [True]
    # from now on the split comes from the cache: generating it again would fail
    monkeypatch.setattr(D, "generate_digits", lambda *a: pytest.fail("digits regenerated despite the cache"))
    cached = D.load_dataset("digits", data_dir=tmp_path, split_seed=3)
    _same_splits(fresh, first)
    _same_splits(fresh, cached)
    assert cached.info["source"] == "sklearn.datasets.load_digits"
    assert cached.info["train_index_sha"] == fresh.info["train_index_sha"]
    with np.load(next(tmp_path.iterdir())) as z:
        assert sorted(z.files) == ["test_index", "train_index", "x", "x_test", "y", "y_test"]


def test_digits_cache_misses_another_split_or_sklearn(tmp_path, monkeypatch):
    D.load_dataset("digits", data_dir=tmp_path, split_seed=0)
    seed1 = D.load_dataset("digits", split_seed=1).info   # no data_dir: made by scikit-learn
    calls = []
    generate = D.generate_digits
    monkeypatch.setattr(D, "generate_digits", lambda *a: calls.append(a) or generate(*a))
    D.load_dataset("digits", data_dir=tmp_path, split_seed=0)
    assert calls == []                                                 # a hit
    other_seed = D.load_dataset("digits", data_dir=tmp_path, split_seed=1)
    D.load_dataset("digits", data_dir=tmp_path, split_seed=0, test_fraction=0.25)
    assert calls == [(1, 0.2), (0, 0.25)]
    assert json.dumps(other_seed.info) == json.dumps(seed1)
    version = D.importlib.metadata.version
    monkeypatch.setattr(D.importlib.metadata, "version",
                        lambda name: "0.0-other" if name == "scikit-learn" else version(name))
    D.load_dataset("digits", data_dir=tmp_path, split_seed=0)           # another scikit-learn: regenerated
    assert calls == [(1, 0.2), (0, 0.25), (0, 0.2)]
    assert len(list(tmp_path.glob("digits-*.npz"))) == 4


def test_digits_from_the_cache_does_not_import_sklearn(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from convergent.nets.data import load_dataset; "
            f"d = load_dataset('digits', data_dir={str(tmp_path)!r}); "
            "print('sklearn' in sys.modules, d.info['fingerprint'])")
    run = lambda: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,  # noqa: E731
                                 check=True).stdout.split()
    imported, fingerprint = run()
    assert imported == "True"                 # no cache yet: scikit-learn makes the split
    imported, again = run()
    assert imported == "False" and again == fingerprint


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


# --- shapes32: CIFAR-shaped, generated offline ----------------------------------------------

SMALL = {"n_train": 1000, "n_test": 200}


@pytest.fixture(scope="module")
def shapes_small():
    """The raw generator output at a small size (uint8 images, int64 labels)."""
    return D.generate_shapes32(**SMALL)


def test_shapes32_generator_is_deterministic(shapes_small):
    again = D.generate_shapes32(**SMALL)
    for key in ("x", "y", "x_test", "y_test"):
        assert again[key].tobytes() == shapes_small[key].tobytes(), key


def test_shapes32_shapes_dtypes_labels_balance(shapes_small, no_network):
    raw = shapes_small
    assert raw["x"].shape == (1000, 3, 32, 32) and raw["x"].dtype == np.uint8
    assert raw["x_test"].shape == (200, 3, 32, 32) and raw["y"].dtype == np.int64
    # labels are balanced per block of 1,000: exactly 100 per class in the first block
    np.testing.assert_array_equal(np.bincount(raw["y"], minlength=10), np.full(10, 100))
    counts = np.bincount(raw["y_test"], minlength=10)
    assert len(counts) == 10 and counts.min() >= 10, counts  # a prefix of a balanced block
    # images use the whole range and are not constant: foreground, background, texture, noise
    assert raw["x"].min() == 0 and raw["x"].max() == 255
    assert (raw["x"].reshape(1000, -1).std(axis=1) > 5).all()

    d = D.load_dataset("shapes32", options=SMALL)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert d.x_train.shape == (1000, 3, 32, 32) and d.x_test.shape == (200, 3, 32, 32)
    assert d.input_shape == (3, 32, 32) and d.num_classes == 10 and d.name == "shapes32"
    assert int(d.y_train.min()) == 0 and int(d.y_train.max()) == 9
    # the loader's pixels are the generator's uint8 / 255, standardised per channel
    mean = np.array(d.info["normalisation"]["mean"]).reshape(1, 3, 1, 1)
    std = np.array(d.info["normalisation"]["std"]).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(d.x_test.double().numpy() * std + mean, raw["x_test"] / 255.0, atol=1e-5)
    np.testing.assert_array_equal(d.y_train.numpy(), raw["y"])
    info = d.info
    assert info["generator_args"]["n_train"] == 1000 and info["generator_args"]["n_test"] == 200
    assert info["generator_args"]["classes"] == list(D.SHAPES32_CLASSES)
    assert info["scale"] == "uint8 / 255" and info["n_train"] == 1000
    json.dumps(info)


def test_shapes32_size_option_nests_and_keeps_the_test_set(shapes_small):
    """A smaller size is a prefix of a larger one; the training size does not move the test set."""
    small = D.generate_shapes32(n_train=250, n_test=100)
    np.testing.assert_array_equal(small["x"], shapes_small["x"][:250])
    np.testing.assert_array_equal(small["y"], shapes_small["y"][:250])
    np.testing.assert_array_equal(small["x_test"], shapes_small["x_test"][:100])
    bigger = D.generate_shapes32(n_train=1100, n_test=100)   # a second block
    np.testing.assert_array_equal(bigger["x"][:1000], shapes_small["x"])
    assert not np.array_equal(bigger["x"][1000:1100], bigger["x"][:100])
    d = D.load_dataset("shapes32", options={"n_train": 250, "n_test": 100})
    assert (d.n_train, d.n_test) == (250, 100)


def test_shapes32_train_and_test_are_disjoint(shapes_small):
    train = {row.tobytes() for row in shapes_small["x"].reshape(1000, -1)}
    test = {row.tobytes() for row in shapes_small["x_test"].reshape(200, -1)}
    assert len(train) == 1000 and len(test) == 200   # no duplicates within a split either
    assert not train & test


@pytest.mark.parametrize("options, words", [
    ({"n_train": 0}, ["data.shapes32.n_train", "100..100000"]),
    ({"n_test": -5}, ["data.shapes32.n_test", "100..100000"]),
    ({"n_test": 99}, ["data.shapes32.n_test", "100..100000"]),
    ({"n_train": 10**8}, ["data.shapes32.n_train", "100..100000"]),
    ({"n_train": 1.5e3}, ["data.shapes32.n_train", "integer"]),
    ({"size": 10}, ["data.shapes32.size", "allowed: n_train, n_test"]),
])
def test_shapes32_size_that_does_not_fit_is_refused(options, words):
    with pytest.raises(ValueError) as err:
        D.load_dataset("shapes32", options=options)
    for word in words:
        assert word in str(err.value), str(err.value)


def test_options_of_a_dataset_without_any_are_refused():
    with pytest.raises(ValueError, match="takes no options"):
        D.load_dataset("digits", options={"n_train": 100})


def test_shapes32_cache_is_written_atomically_and_reused(tmp_path, monkeypatch, no_network):
    cache_dir = tmp_path / "data"
    real_savez = np.savez

    def interrupted(f, **arrays):   # the write dies half-way: no file may be left behind
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        D.load_dataset("shapes32", data_dir=cache_dir, options={"n_train": 200, "n_test": 100})
    assert list(cache_dir.iterdir()) == []
    monkeypatch.setattr(np, "savez", real_savez)

    first = D.load_dataset("shapes32", data_dir=cache_dir, options={"n_train": 200, "n_test": 100})
    files = list(cache_dir.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz" and files[0].name.startswith("shapes32-")
    assert first.info["source"].endswith("(generated)")
    again = D.load_dataset("shapes32", data_dir=cache_dir, options={"n_train": 200, "n_test": 100})
    assert "cache" in again.info["source"]
    assert again.info["fingerprint"] == first.info["fingerprint"]
    assert torch.equal(again.x_train, first.x_train)
    # no cache at all gives the same data; another size gets its own file
    assert D.load_dataset("shapes32", options={"n_train": 200, "n_test": 100}).info["fingerprint"] == \
        first.info["fingerprint"]
    D.load_dataset("shapes32", data_dir=cache_dir, options={"n_train": 300, "n_test": 100})
    assert len(list(cache_dir.iterdir())) == 2


def _mask(kind: str, angle: float, n: int = 201) -> np.ndarray:
    """Inside-mask of a shape on an n×n grid over [-1.2, 1.2]², rotated by ``angle``."""
    t = np.linspace(-1.2, 1.2, n)
    x, y = np.meshgrid(t, t)
    c, s = np.cos(angle), np.sin(angle)
    return D._shape_sdf(kind, c * x + s * y, -s * x + c * y) < 0


def test_shapes32_classes_are_different_shapes_up_to_rotation():
    """Rotation is a nuisance variable, so no two classes may coincide under some rotation
    (a square and a diamond would): best IoU over rotations stays well below 1."""
    angles = np.deg2rad(np.arange(0, 360, 8))
    masks = {k: np.stack([_mask(k, t, 81) for t in angles]) for k in D.SHAPES32_CLASSES}  # (angles, 81, 81)
    for i, a in enumerate(D.SHAPES32_CLASSES):
        upright = masks[a][0]
        assert 0.05 < upright.mean() < 0.9, a  # a shape, not empty or full
        for b in D.SHAPES32_CLASSES[i + 1:]:
            iou = (upright & masks[b]).sum(axis=(1, 2)) / (upright | masks[b]).sum(axis=(1, 2))
            assert iou.max() < 0.85, (a, b, iou.max())
    # and the test can fail: a square rotated by 45° is a diamond, which it would catch
    diamond = _mask("square", np.pi / 4, 81)
    assert max(((diamond & m).sum() / (diamond | m).sum()) for m in masks["square"]) > 0.95


def test_shapes32_disc_and_square_areas_match_geometry():
    """The signed distances put the boundary where the geometry says (naive area check)."""
    n = 801
    cell = (2.4 / (n - 1)) ** 2
    assert abs(_mask("disc", 0.0, n).sum() * cell - np.pi * 0.9 ** 2) < 0.02
    assert abs(_mask("square", 0.3, n).sum() * cell - (2 * 0.72) ** 2) < 0.02
    assert abs(_mask("ring", 0.0, n).sum() * cell - np.pi * (0.94 ** 2 - 0.5 ** 2)) < 0.02


def _random_conv_features(x: np.ndarray, filters: int = 16, seed: int = 0) -> np.ndarray:
    """Fixed random 5×5 conv filters at two scales on images with their mean colour removed;
    |response| pooled by mean and max over positions: (n, 4·filters), invariant to where the
    shape is and to the sign of its contrast. Nothing is learned here but the linear read-out."""
    g = torch.Generator().manual_seed(seed)
    t = torch.from_numpy(x).float() / 255
    t = t - t.mean(dim=(2, 3), keepdim=True)
    out = []
    for scale in (1, 2):
        xs = torch.nn.functional.avg_pool2d(t, scale) if scale > 1 else t
        r = torch.nn.functional.conv2d(xs, torch.randn(filters, 3, 5, 5, generator=g)).abs()
        out += [r.mean(dim=(2, 3)), r.amax(dim=(2, 3))]
    return torch.cat(out, 1).double().numpy()


def test_shapes32_class_is_not_in_the_mean_colour_or_the_pixels_but_is_learnable(shapes_small):
    """Colour is a nuisance variable: per-channel means predict the class at chance, and so does a
    linear map of the raw pixels (position, rotation and polarity vary). The shape is learnable:
    a linear read-out of translation-invariant random conv features beats chance clearly, and
    does not with shuffled labels (so the margin is the data's, not the classifier's)."""
    from sklearn.linear_model import LogisticRegression, RidgeClassifier

    x, y = shapes_small["x"], shapes_small["y"]
    xt, yt = shapes_small["x_test"], shapes_small["y_test"]
    colour = LogisticRegression(max_iter=500).fit(x.mean(axis=(2, 3)), y)
    assert colour.score(xt.mean(axis=(2, 3)), yt) < 0.2
    pixels = RidgeClassifier(alpha=1e4).fit(x.reshape(len(x), -1) / 255.0, y)
    assert pixels.score(xt.reshape(len(xt), -1) / 255.0, yt) < 0.25

    f, ft = _random_conv_features(x), _random_conv_features(xt)
    mu, sd = f.mean(axis=0), f.std(axis=0) + 1e-12
    fit = lambda labels: LogisticRegression(max_iter=1000, C=0.1).fit((f - mu) / sd, labels)  # noqa: E731
    assert fit(y).score((ft - mu) / sd, yt) > 0.4                     # measured 0.55 (chance 0.1)
    shuffled = np.random.default_rng(0).permutation(y)
    assert fit(shuffled).score((ft - mu) / sd, yt) < 0.2
