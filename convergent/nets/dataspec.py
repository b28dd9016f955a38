"""What each dataset is called and which options it takes, without importing torch.

The Snakefile and the config checks (:func:`convergent.sweep.plan_sweep`) need the
dataset names and the allowed ``shapes32`` sizes on every dry run; importing
:mod:`convergent.nets.data` (torch) for that would slow planning, so they live here, as the
architectures' names live in :mod:`convergent.nets.archspec`.

Per-dataset options are the config's ``data.<dataset>`` section. Every job that loads a
dataset gets the same options (through its ``settings``), so every stage sees the same
images; only ``shapes32`` has any: its size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DATASETS = ("digits", "mnist1d", "cifar10", "cifar100", "shapes32")

#: shapes32's ten classes, in label order: a shape kind drawn at a random position, scale,
#: rotation and colour on a textured background (see convergent.nets.data.generate_shapes32)
SHAPES32_CLASSES = ("disc", "square", "triangle", "plus", "ring", "stripes", "half_disc", "star",
                    "two_dots", "frame")
#: the size option and its allowed range, both ends included. ≥ 100 rows keeps ≥ 10 images
#: of every class in each split (labels are balanced per block of 1,000); ≤ 100,000 keeps one
#: split's float32 tensor ≤ 1.2 GB (CIFAR-10 has 50,000 / 10,000)
SHAPES32_DEFAULTS: dict[str, int] = {"n_train": 10_000, "n_test": 2_000}
SHAPES32_LIMITS: dict[str, tuple[int, int]] = {"n_train": (100, 100_000), "n_test": (100, 100_000)}
#: the datasets that take options, with their defaults
DATASET_OPTIONS: dict[str, dict[str, int]] = {"shapes32": SHAPES32_DEFAULTS}


def shapes32_options(options: Mapping[str, Any] | None = None) -> dict[str, int]:
    """:data:`SHAPES32_DEFAULTS` updated with ``options``, checked against :data:`SHAPES32_LIMITS`.

    Raises ValueError naming the key (``data.shapes32.<key>``) and the allowed range.
    """
    opts = dict(SHAPES32_DEFAULTS)
    for key, value in dict(options or {}).items():
        if key not in SHAPES32_DEFAULTS:
            raise ValueError(f"data.shapes32.{key}: unknown option; allowed: {', '.join(SHAPES32_DEFAULTS)}")
        opts[key] = value
    for key, (low, high) in SHAPES32_LIMITS.items():
        value = opts[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"data.shapes32.{key} = {value!r} does not fit; allowed: an integer "
                             f"in {low}..{high}")
    return opts


def is_imported(name: str) -> bool:
    """Whether dataset ``name`` is an import path ``package.module:loader`` (not a built-in)."""
    from convergent.nets.registry import is_import_path

    return name not in DATASETS and is_import_path(name)


def dataset_options(name: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The options of dataset ``name`` with defaults filled in and checked ({} for datasets
    without options, which refuse any). Raises ValueError naming the key.

    A dataset by import path takes any options (its loader's keyword arguments) and
    ``num_classes`` (a positive integer; default: from the labels)."""
    if is_imported(name):
        opts = dict(options or {})
        classes = opts.get("num_classes")
        if classes is not None and (isinstance(classes, bool) or not isinstance(classes, int) or classes < 2):
            raise ValueError(f"data.{name}.num_classes = {classes!r}; allowed: an integer ≥ 2, or leave it "
                             f"out to count the labels")
        return opts
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)} "
                         f"or an import path package.module:loader")
    if name == "shapes32":
        return shapes32_options(options)
    if options:
        raise ValueError(f"data.{name}: dataset {name!r} takes no options, got {sorted(options)}; "
                         f"only {', '.join(DATASET_OPTIONS)} has any")
    return {}


#: (input shape (c, h, w) or (c, l), number of classes) of each dataset, as the loaders return them
DATASET_SHAPES: dict[str, tuple[tuple[int, ...], int]] = {
    "digits": ((1, 8, 8), 10), "mnist1d": ((1, 40), 10), "cifar10": ((3, 32, 32), 10),
    "cifar100": ((3, 32, 32), 100), "shapes32": ((3, 32, 32), len(SHAPES32_CLASSES)),
}
#: rows of each split of the datasets with a fixed size: digits' 1,797 images split 80/20
#: (stratified, convergent.nets.data), MNIST-1D's own 4,000/1,000, CIFAR's official 50,000/10,000
FIXED_SPLIT_SIZES: dict[str, dict[str, int]] = {
    "digits": {"train": 1437, "test": 360}, "mnist1d": {"train": 4000, "test": 1000},
    "cifar10": {"train": 50_000, "test": 10_000}, "cifar100": {"train": 50_000, "test": 10_000},
}


def split_sizes(name: str, options: Mapping[str, Any] | None = None) -> dict[str, int]:
    """``{"train": rows, "test": rows}`` of dataset ``name`` with its options (shapes32: its size;
    a dataset by import path: its loader's, which this calls, :func:`convergent.nets.data.imported_summary`)."""
    if is_imported(name):
        from convergent.nets.data import imported_summary

        return dict(imported_summary(name, options)[2])
    if name == "shapes32":
        opts = shapes32_options(options)
        return {"train": opts["n_train"], "test": opts["n_test"]}
    return dict(FIXED_SPLIT_SIZES[name])


def dataset_shape(name: str, options: Mapping[str, Any] | None = None) -> tuple[tuple[int, ...], int]:
    """(input shape, number of classes) of dataset ``name`` (:data:`DATASET_SHAPES` for the
    built-ins; a dataset by import path: from its loader, :func:`convergent.nets.data.imported_summary`)."""
    if is_imported(name):
        from convergent.nets.data import imported_summary

        shape, classes, _ = imported_summary(name, options)
        return shape, classes
    return DATASET_SHAPES[name]
