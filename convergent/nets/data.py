"""Datasets as in-memory tensors with a fixed, recorded train/test split.

Every loader returns a :class:`DatasetSplits`: float32 inputs of shape
``(n, *input_shape)`` (channels first: ``(c, h, w)`` images, ``(c, l)`` signals),
int64 labels in ``[0, num_classes)``, and an ``info`` dict (JSON-serialisable) that
records where the data came from, how it was split and how it was standardised.

Conventions

* Inputs are standardised per channel with the *training* set's mean and standard
  deviation (over samples and positions); the test set uses the same statistics.
* ``max_train`` / ``max_test`` keep the first rows of an already shuffled split, so
  a smaller dataset is a prefix of the larger one; statistics are computed after
  this cut (they describe the data actually trained on).
* Nothing is ever downloaded unless ``download=True`` is passed for CIFAR. MNIST-1D
  and ``shapes32`` are generated procedurally (optionally cached as ``.npz`` in ``data_dir``).
  ``digits``' split arrays are cached there too (keyed by the split and the installed
  scikit-learn), so a job with the cache never imports scikit-learn (≈ 1.5 s).
* ``shapes32`` is CIFAR-shaped (3 × 32 × 32, 10 classes, uint8 / 255 before
  standardisation) and stands in for CIFAR-10 offline; its size is a dataset option
  (``options={"n_train": ..., "n_test": ...}``, the config's ``data.shapes32``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from convergent.io import atomic_file
from convergent.nets.registry import is_import_path
from convergent.nets.dataspec import (DATASETS, SHAPES32_CLASSES, SHAPES32_DEFAULTS,  # noqa: F401  (re-exported)
                                  SHAPES32_LIMITS, dataset_options)

#: MNIST-1D generator settings: the package defaults (4,000 train / 1,000 test, seed 42)
#: — the standard benchmark — minus the download URL, which we never use.
MNIST1D_ARGS: dict[str, Any] = {
    "num_samples": 5000, "train_split": 0.8, "template_len": 12, "padding": [36, 60],
    "scale_coeff": 0.4, "max_translation": 48, "corr_noise_scale": 0.25,
    "iid_noise_scale": 2e-2, "shear_scale": 0.75, "shuffle_seq": False,
    "final_seq_length": 40, "seed": 42,
}


@dataclass(frozen=True, eq=False)  # eq on tensors is ambiguous; compare info['fingerprint']
class DatasetSplits:
    """Train and test tensors of one dataset.

    ``x_*``: float32, shape (n, *input_shape), standardised; ``y_*``: int64, shape (n,).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    input_shape: tuple[int, ...]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])

    def split(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of ``which`` ∈ {"train", "test"}."""
        if which == "train":
            return self.x_train, self.y_train
        if which == "test":
            return self.x_test, self.y_test
        raise ValueError(f"unknown split {which!r}; allowed: train, test")


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, download: bool = False,
                 split_seed: int = 0, test_fraction: float = 0.2, max_train: int | None = None,
                 max_test: int | None = None, options: Mapping[str, Any] | None = None) -> DatasetSplits:
    """Load ``name`` (one of :data:`DATASETS`) as standardised in-memory tensors.

    ``split_seed`` and ``test_fraction`` only apply to ``digits`` (the other datasets
    ship their own split; ``info`` says which). ``data_dir`` is where CIFAR lives
    (torchvision layout) and, if given, where the generated MNIST-1D and shapes32 and
    the digits split are cached. ``options``: per-dataset options (the config's ``data.<name>``); only
    ``shapes32`` has any (its size, :data:`convergent.nets.dataspec.SHAPES32_DEFAULTS`), the
    others refuse them.
    """
    opts = dataset_options(name, options)
    if is_import_path(name):
        xtr, ytr, xte, yte, num_classes, info = imported_arrays(name, opts)
        xtr, ytr = _head(xtr, ytr, max_train)
        xte, yte = _head(xte, yte, max_test)
        info.update({"dataset": name, "n_train": int(len(ytr)), "n_test": int(len(yte)),
                     "max_train": max_train, "max_test": max_test,
                     "normalisation": {"kind": "none (the loader's own)"}})
        return _splits(name, xtr, ytr, xte, yte, num_classes, info)
    if name == "shapes32":
        xtr, ytr, xte, yte, info = _shapes32(data_dir, opts)
        num_classes = len(SHAPES32_CLASSES)
    elif name == "digits":
        xtr, ytr, xte, yte, info = _digits(split_seed, test_fraction, data_dir)
        num_classes = 10
    elif name == "mnist1d":
        xtr, ytr, xte, yte, info = _mnist1d(data_dir)
        num_classes = 10
    else:
        xtr, ytr, xte, yte, info = _cifar(name, data_dir, download)
        num_classes = 10 if name == "cifar10" else 100
    xtr, ytr = _head(xtr, ytr, max_train)
    xte, yte = _head(xte, yte, max_test)
    mean, std = channel_stats(xtr)
    xtr, xte = standardise(xtr, mean, std), standardise(xte, mean, std)
    info.update({
        "dataset": name, "n_train": int(len(ytr)), "n_test": int(len(yte)),
        "max_train": max_train, "max_test": max_test,
        "normalisation": {"kind": "per-channel, training-set statistics",
                          "mean": [float(m) for m in mean], "std": [float(s) for s in std]},
    })
    return _splits(name, xtr, ytr, xte, yte, num_classes, info)


def _splits(name: str, xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, num_classes: int,
            info: dict[str, Any]) -> DatasetSplits:
    """The tensors of both splits with ``info``'s fingerprint (SHA-256 of every array's bytes)."""
    info["fingerprint"] = _fingerprint(xtr, ytr, xte, yte)
    return DatasetSplits(
        name=name,
        x_train=torch.from_numpy(np.ascontiguousarray(xtr)),
        y_train=torch.from_numpy(ytr.astype(np.int64)),
        x_test=torch.from_numpy(np.ascontiguousarray(xte)),
        y_test=torch.from_numpy(yte.astype(np.int64)),
        num_classes=num_classes,
        input_shape=tuple(int(s) for s in xtr.shape[1:]),
        info=json.loads(json.dumps(info)),  # guarantee plain JSON types
    )


# --- a dataset by import path ------------------------------------------------------------

def imported_arrays(name: str, options: Mapping[str, Any] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, dict[str, Any]]:
    """``(x_train, y_train, x_test, y_test, num_classes, info)`` from the loader ``name``
    (``package.module:loader``) called with ``options`` less ``num_classes``.

    The loader returns ``(train, test)``, two ``torch.utils.data.Dataset`` of ``(x, y)``: x a
    float tensor (or anything ``torch.as_tensor`` takes) of the same shape in every item, y an
    integer label. ``num_classes``: the option, else 1 + the largest label of both splits.
    Inputs are kept as the loader gives them (float32, not standardised). Every problem raises
    ``ValueError`` naming the config key ``sweep.datasets`` or ``data.<name>``.
    """
    from convergent.nets.registry import resolve

    opts = dict(options or {})
    classes = opts.pop("num_classes", None)
    loader = resolve(name, f"sweep.datasets ({name})")
    try:
        out = loader(**opts)
    except TypeError as err:
        raise ValueError(f"data.{name}: the loader refused its options {sorted(opts)}: {err}") from None
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise ValueError(f"sweep.datasets: loader {name} must return (train, test), two torch Datasets; "
                         f"got a {type(out).__name__}")
    (xtr, ytr), (xte, yte) = (_dataset_arrays(ds, name, split) for ds, split in zip(out, ("train", "test")))
    if xtr.shape[1:] != xte.shape[1:]:
        raise ValueError(f"sweep.datasets: loader {name}: train inputs have shape {xtr.shape[1:]}, "
                         f"test inputs {xte.shape[1:]}")
    top = int(max(ytr.max(initial=0), yte.max(initial=0)))
    num_classes = int(classes) if classes is not None else top + 1
    if top >= num_classes or min(ytr.min(initial=0), yte.min(initial=0)) < 0:
        raise ValueError(f"data.{name}.num_classes = {num_classes}: labels must lie in 0..{num_classes - 1}, "
                         f"the loader's lie in {min(ytr.min(initial=0), yte.min(initial=0))}..{top}")
    if num_classes < 2:
        raise ValueError(f"sweep.datasets: loader {name} gives one class only (labels all 0)")
    info = {"source": f"{name}(**{json.dumps(opts, sort_keys=True, default=str)})",
            "split": "the loader's own", "split_seed": None, "num_classes_from": (
                f"data.{name}.num_classes" if classes is not None else "1 + the largest label")}
    return xtr, ytr, xte, yte, num_classes, info


def _dataset_arrays(ds: Any, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(x float32 (n, ...), y int64 (n,)) of a Dataset of (x, y) pairs; a ``TensorDataset`` of two
    tensors is read whole, any other item by item."""
    from torch.utils.data import TensorDataset

    where = f"sweep.datasets: loader {name}, {split} split"
    if isinstance(ds, TensorDataset) and len(ds.tensors) == 2:
        x, y = ds.tensors
    else:
        try:
            items = [ds[i] for i in range(len(ds))]
            x = torch.stack([torch.as_tensor(a) for a, _ in items])
            y = torch.as_tensor([b for _, b in items])
        except Exception as err:
            raise ValueError(f"{where}: not a Dataset of (x, y) pairs of equal shape: "
                             f"{type(err).__name__}: {err}") from None
    if len(x) == 0:
        raise ValueError(f"{where}: empty")
    y = torch.as_tensor(y)
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.dim() != 1:
        raise ValueError(f"{where}: labels must be integers, one per item; got {y.dtype} of shape {tuple(y.shape)}")
    return (np.ascontiguousarray(torch.as_tensor(x).float().numpy()),
            y.to(torch.int64).numpy())


def imported_summary(name: str, options: Mapping[str, Any] | None = None) -> tuple[tuple[int, ...], int, dict[str, int]]:
    """(input shape, number of classes, {"train": rows, "test": rows}) of a dataset by import path;
    cached per process (planning asks for every cell)."""
    return _imported_summary(name, json.dumps(dict(options or {}), sort_keys=True, default=str))


@functools.lru_cache(maxsize=64)
def _imported_summary(name: str, options: str) -> tuple[tuple[int, ...], int, dict[str, int]]:
    xtr, ytr, xte, yte, num_classes, _ = imported_arrays(name, json.loads(options))
    return tuple(int(s) for s in xtr.shape[1:]), num_classes, {"train": len(ytr), "test": len(yte)}


# --- statistics ---------------------------------------------------------------------------

def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of ``x`` (n, c, ...) over samples and positions, in float64."""
    axes = (0, *range(2, x.ndim))
    mean = x.mean(axis=axes, dtype=np.float64)
    std = x.std(axis=axes, dtype=np.float64)
    # a constant channel would divide by zero; leave it centred but unscaled
    return mean, np.where(std > 1e-12, std, 1.0)


def standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` per channel (axis 1), as float32."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return ((x - mean.reshape(shape)) / std.reshape(shape)).astype(np.float32)


def _head(x: np.ndarray, y: np.ndarray, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    if n is None:
        return x, y
    if n <= 0:
        raise ValueError(f"max_train/max_test must be positive, got {n}")
    return x[:n], y[:n]


def _fingerprint(*arrays: np.ndarray) -> str:
    """Short SHA-256 over the arrays' bytes: equal fingerprints mean identical data."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


# --- digits -------------------------------------------------------------------------------

def _digits(split_seed: int, test_fraction: float, data_dir: str | os.PathLike | None = None):
    """scikit-learn's 1,797 8×8 digits (bundled, no network), stratified split by ``split_seed``.

    With a ``data_dir`` the split arrays (and the split's indices) are cached there, keyed by
    the split and the installed scikit-learn and NumPy versions: a job that finds the cache
    gets the very arrays scikit-learn makes without importing it, and the same ``info``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    settings = {"split_seed": int(split_seed), "test_fraction": float(test_fraction),
                "scikit-learn": importlib.metadata.version("scikit-learn"),
                "numpy": importlib.metadata.version("numpy")}
    arrays, _ = _generated_or_cached(data_dir, "digits", settings,
                                     lambda: generate_digits(split_seed, test_fraction))
    info = {"source": "sklearn.datasets.load_digits",
            "split": "stratified, sklearn train_test_split (shuffled)",
            "split_seed": int(split_seed), "test_fraction": float(test_fraction),
            "train_index_sha": _fingerprint(arrays["train_index"]),
            "test_index_sha": _fingerprint(arrays["test_index"])}
    return arrays["x"], arrays["y"], arrays["x_test"], arrays["y_test"], info


def generate_digits(split_seed: int, test_fraction: float) -> dict[str, np.ndarray]:
    """The digits split by scikit-learn: keys x, y, x_test, y_test (float32 (n, 1, 8, 8) in
    0..16, int64) and train_index, test_index (rows of ``load_digits()``)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = bunch.images.astype(np.float32)[:, None, :, :]  # (1797, 1, 8, 8), values 0..16
    y = bunch.target.astype(np.int64)
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=test_fraction, stratify=y, random_state=split_seed)
    return {"x": x[tr], "y": y[tr], "x_test": x[te], "y_test": y[te], "train_index": tr, "test_index": te}


# --- MNIST-1D -----------------------------------------------------------------------------

def _mnist1d(data_dir: str | os.PathLike | None):
    """MNIST-1D generated with the package's own ``make_dataset`` (never its downloader).

    Shape (1, 40). The package's own 4,000/1,000 split. Cached in ``data_dir`` if given.
    """
    arrays, source = _generated_or_cached(data_dir, "mnist1d", MNIST1D_ARGS, generate_mnist1d)
    info = {"source": f"mnist1d.data.make_dataset ({source})", "generator_args": MNIST1D_ARGS,
            "split": "the package's own (first 80 % of its shuffled samples train)",
            "split_seed": None}
    as_signal = lambda a: a.astype(np.float32)[:, None, :]  # noqa: E731  (n, 40) → (n, 1, 40)
    return (as_signal(arrays["x"]), arrays["y"].astype(np.int64),
            as_signal(arrays["x_test"]), arrays["y_test"].astype(np.int64), info)


def generate_mnist1d() -> dict[str, np.ndarray]:
    """Run ``mnist1d.data.make_dataset`` without touching the network or the disk.

    It seeds Python's and NumPy's *global* generators, so their states are saved and
    restored around the call: loading data must not change a training run's randomness.
    """
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(ObjectView(dict(MNIST1D_ARGS)))
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {k: np.asarray(d[k]) for k in ("x", "y", "x_test", "y_test")}


def _generated_or_cached(data_dir: str | os.PathLike | None, name: str, settings: Mapping[str, Any],
                         generate: Callable[[], dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], str]:
    """The arrays of a generated dataset (x, y, x_test, y_test and any others ``generate``
    returns) and where they came from.

    Read from ``data_dir/{name}-{hash of settings}.npz`` when that cache exists; otherwise
    ``generate()`` and, with a ``data_dir``, write the cache atomically. The hash covers every
    generator setting, so another size or setting never reads a stale cache.
    """
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    cache = Path(data_dir) / f"{name}-{key}.npz" if data_dir is not None else None
    if cache is not None and cache.exists():
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}, f"cache {cache.name}"
    arrays = generate()
    if cache is not None:
        _atomic_savez(cache, arrays)
    return arrays, "generated"


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_file(path, f"data cache {path}") as f:
        np.savez(f, **arrays)


# --- CIFAR --------------------------------------------------------------------------------

def _cifar(name: str, data_dir: str | os.PathLike | None, download: bool):
    """CIFAR-10/100 through torchvision's own reader; official 50,000/10,000 split.

    Images become float32 in [0, 1], (3, 32, 32), before standardisation.
    """
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    if data_dir is None:
        raise FileNotFoundError(f"{name} needs data_dir: the folder that holds {cls.base_folder}/ "
                                "(torchvision layout); set data_dir in the config")
    root = Path(data_dir)
    try:
        train = cls(root=str(root), train=True, download=download)
        test = cls(root=str(root), train=False, download=download)
    except RuntimeError as err:
        raise FileNotFoundError(
            f"{name} not found or corrupted under data_dir={str(root)!r}: expected "
            f"{root / cls.base_folder}/ as torchvision writes it (download=True lets "
            f"torchvision fetch it; needs internet). torchvision said: {err}") from err

    def to_chw(ds) -> tuple[np.ndarray, np.ndarray]:
        # ds.data is uint8 (n, 32, 32, 3); skip the PIL path of __getitem__ entirely
        x = np.asarray(ds.data, dtype=np.float32).transpose(0, 3, 1, 2) / 255.0
        return np.ascontiguousarray(x), np.asarray(ds.targets, dtype=np.int64)

    xtr, ytr = to_chw(train)
    xte, yte = to_chw(test)
    info = {"source": f"torchvision.datasets.{cls.__name__}", "root": str(root.resolve()),
            "split": "official train/test", "split_seed": None, "scale": "uint8 / 255"}
    return xtr, ytr, xte, yte, info


# --- shapes32: CIFAR-shaped, procedurally generated ----------------------------------------

#: everything else the images depend on; part of the cache key and of ``info``
SHAPES32_GENERATOR: dict[str, Any] = {
    "version": 1, "seed": 12, "block": 1000, "size": 32,
    "radius_px": [6.0, 11.0],          # the shape's outer radius (its unit length), pixels
    "rotation": "uniform [0, 2pi)",
    "centre_margin": 0.8,              # centre at least 0.8 radius from the border
    "colour": "background uniform in [0,1]^3; foreground = (background + U[0.3,0.7]^3) mod 1",
    "texture_amplitude": 0.2,          # per-region smooth texture: 3 random plane waves per channel
    "texture_cycles": [0.5, 4.0],      # their frequencies, cycles per image
    "noise_std": 0.04,                 # i.i.d. pixel noise
    "quantisation": "uint8",
}
def _shape_sdf(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside, about 1 = the shape's radius) of shape ``kind`` at
    local coordinates (u, v), any shape. Exact for most kinds, Lipschitz-close for the star."""
    r = np.hypot(u, v)
    au, av = np.abs(u), np.abs(v)
    box = np.maximum(au, av)
    if kind == "disc":
        return r - 0.9
    if kind == "square":
        return box - 0.72
    if kind == "triangle":  # equilateral, circumradius 1: three half-planes at distance 0.5
        angles = np.deg2rad([90.0, 210.0, 330.0])
        return np.max([np.cos(a) * u + np.sin(a) * v for a in angles], axis=0) - 0.5
    if kind == "plus":
        return np.minimum(np.maximum(au - 0.3, av - 0.95), np.maximum(au - 0.95, av - 0.3))
    if kind == "ring":
        return np.abs(r - 0.72) - 0.22
    if kind == "stripes":  # three parallel bars
        bars = np.min([np.abs(v - c) for c in (-0.62, 0.0, 0.62)], axis=0) - 0.17
        return np.maximum(au - 0.9, bars)
    if kind == "half_disc":
        w = v + 0.4  # flat side through the centre shifted so the half-disc sits around (0, 0)
        return np.maximum(np.hypot(u, w) - 1.0, -w)
    if kind == "star":  # five points
        phi = np.arctan2(v, u)
        return (r - (0.55 + 0.42 * np.cos(5 * phi))) * 0.7
    if kind == "two_dots":
        return np.minimum(np.hypot(u - 0.55, v), np.hypot(u + 0.55, v)) - 0.4
    if kind == "frame":  # hollow square
        return np.maximum(box - 0.88, 0.52 - box)
    raise ValueError(f"unknown shape {kind!r}; allowed: {', '.join(SHAPES32_CLASSES)}")


def _texture(params: list[np.ndarray], g: Mapping[str, Any]) -> np.ndarray:
    """A smooth random texture per image and channel, float32 (n, 3, size, size): three plane
    waves cos(2π(fx·x + fy·y) + φ) per channel; ``params`` = [direction θ, frequency in cycles
    per image, phase φ, amplitude in ±1 (scaled by ``texture_amplitude`` / 3)], each (n, 3, 3).

    A plane wave is separable, cos(a + b) = cos a cos b − sin a sin b, so only (n, 3, size)
    cosines are evaluated and the images are outer products."""
    size = int(g["size"])
    theta, cycles, phase, amp = params
    freq = cycles / size
    amp = amp * (g["texture_amplitude"] / 3)
    pos = np.arange(size) + 0.5
    ax = 2 * np.pi * (freq * np.cos(theta))[..., None] * pos + phase[..., None]   # (n, 3, waves, x)
    ay = 2 * np.pi * (freq * np.sin(theta))[..., None] * pos                      # (n, 3, waves, y)
    # Σ_k amp_k (cos ay_k ⊗ cos ax_k − sin ay_k ⊗ sin ax_k) as one batched matrix product
    left = np.concatenate([amp[..., None] * np.cos(ay), -amp[..., None] * np.sin(ay)], axis=2)
    right = np.concatenate([np.cos(ax), np.sin(ax)], axis=2)
    return np.matmul(left.transpose(0, 1, 3, 2).astype(np.float32), right.astype(np.float32))


def _shapes32_block(seed: int, split: int, block: int, n: int, g: Mapping[str, Any]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Block ``block`` of a split (0 train, 1 test): ``n`` ≤ g["block"] images (n, 3, 32, 32) uint8
    and their labels. Each block has its own generator, so a smaller split is a prefix of a
    larger one and train and test come from disjoint streams."""
    rng = np.random.default_rng([seed, split, block])
    size, full = int(g["size"]), int(g["block"])
    labels = rng.permutation(np.arange(full) % len(SHAPES32_CLASSES))  # balanced per full block
    radius = rng.uniform(*g["radius_px"], full)
    margin = g["centre_margin"] * radius
    cx = margin + rng.uniform(0, 1, full) * (size - 2 * margin)
    cy = margin + rng.uniform(0, 1, full) * (size - 2 * margin)
    angle = rng.uniform(0, 2 * np.pi, full)
    background = rng.uniform(0, 1, (full, 3))
    foreground = np.mod(background + rng.uniform(0.3, 0.7, (full, 3)), 1.0)
    # every draw is made for the full block and then cut (the noise, drawn last, is a prefix of
    # the full draw), so block k's first n images do not depend on n
    tex_params = [[rng.uniform(0, 2 * np.pi, (full, 3, 3)), rng.uniform(*g["texture_cycles"], (full, 3, 3)),
                   rng.uniform(0, 2 * np.pi, (full, 3, 3)), rng.uniform(-1, 1, (full, 3, 3))] for _ in range(2)]
    noise = rng.standard_normal((n, 3, size, size), dtype=np.float32) * np.float32(g["noise_std"])
    tex_bg, tex_fg = (_texture([p[:n] for p in params], g) for params in tex_params)
    labels, radius, cx, cy, angle = labels[:n], radius[:n], cx[:n], cy[:n], angle[:n]
    background, foreground = background[:n], foreground[:n]

    ys, xs = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing="ij")
    dx = (xs[None] - cx[:, None, None]) / radius[:, None, None]
    dy = (ys[None] - cy[:, None, None]) / radius[:, None, None]
    c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u, v = c * dx + s * dy, -s * dx + c * dy
    sdf = np.empty((n, size, size))
    for k, kind in enumerate(SHAPES32_CLASSES):  # one vectorised call per class
        idx = labels == k
        sdf[idx] = _shape_sdf(kind, u[idx], v[idx])
    # coverage of each pixel, anti-aliased over about one pixel at the edge
    mask = np.clip(0.5 - sdf * radius[:, None, None], 0.0, 1.0)[:, None].astype(np.float32)
    foreground, background = foreground.astype(np.float32), background.astype(np.float32)
    image = (mask * (foreground[..., None, None] + tex_fg)
             + (1 - mask) * (background[..., None, None] + tex_bg) + noise)
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8), labels.astype(np.int64)


def generate_shapes32(n_train: int = SHAPES32_DEFAULTS["n_train"], n_test: int = SHAPES32_DEFAULTS["n_test"]
                      ) -> dict[str, np.ndarray]:
    """The shapes32 images as uint8 (n, 3, 32, 32) and int64 labels: keys x, y, x_test, y_test.

    Deterministic (fixed seeds in :data:`SHAPES32_GENERATOR`); every array is vectorised
    numpy, one block of ``block`` images at a time.
    """
    g = SHAPES32_GENERATOR
    out = {}
    for split, (key, n) in enumerate((("", n_train), ("_test", n_test))):
        blocks = [_shapes32_block(int(g["seed"]), split, b, min(int(g["block"]), n - b * int(g["block"])), g)
                  for b in range(-(-n // int(g["block"])))]
        out[f"x{key}"] = np.concatenate([x for x, _ in blocks])
        out[f"y{key}"] = np.concatenate([y for _, y in blocks])
    return out


def _shapes32(data_dir: str | os.PathLike | None, opts: Mapping[str, int]):
    """shapes32 of the size in ``opts``, from the cache in ``data_dir`` or generated (then cached)."""
    settings = {**SHAPES32_GENERATOR, "n_train": int(opts["n_train"]), "n_test": int(opts["n_test"]),
                "classes": list(SHAPES32_CLASSES)}
    arrays, source = _generated_or_cached(data_dir, "shapes32", settings,
                                          lambda: generate_shapes32(settings["n_train"], settings["n_test"]))
    info = {"source": f"convergent.nets.data.generate_shapes32 ({source})", "generator_args": settings,
            "split": "fixed: train and test drawn from separate seeded streams", "split_seed": None,
            "scale": "uint8 / 255"}
    as_float = lambda a: a.astype(np.float32) / 255.0  # noqa: E731
    return (as_float(arrays["x"]), arrays["y"].astype(np.int64),
            as_float(arrays["x_test"]), arrays["y_test"].astype(np.int64), info)
