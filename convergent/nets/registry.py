"""Architectures and datasets by name: the built-ins, and any ``package.module:callable``.

``sweep.archs`` and ``sweep.datasets`` take a built-in name or an *import path*
``package.module:attribute`` (the module must be importable by the Python that runs
Snakemake and its jobs: installed, or on ``PYTHONPATH``). One registry maps every built-in
architecture to its factory in :mod:`convergent.nets.models`; an import path extends it, and both
are called the same way (:func:`arch_factory`)::

    factory(width: int, num_classes: int, input_shape: tuple[int, ...], **options) -> nn.Module

A dataset's import path names a loader, called with the config's ``data.<import path>``
options (less ``num_classes``)::

    loader(**options) -> (train, test)   # two torch Datasets of (x, y), y an integer label

(the built-in datasets keep their own loaders in :mod:`convergent.nets.data`, because they read
``data_dir``, cache what they generate and standardise; see :func:`convergent.nets.data.load_dataset`).

This module imports nothing heavy itself; resolving an import path imports the user's module.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

#: ``package.module:attribute`` (dots in the module path, one colon, a Python name after it)
IMPORT_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
#: the same, for the JSON schema (``schemas/config.schema.yaml`` repeats it; a test compares them)
IMPORT_PATH_PATTERN = IMPORT_PATH.pattern

#: the built-in architectures: their factories, as an import path would name them
ARCH_REGISTRY: dict[str, str] = {
    "mlp": "convergent.nets.models:mlp",
    "cnn": "convergent.nets.models:cnn",
    "resnet18": "convergent.nets.models:resnet18",
    "wrn": "convergent.nets.models:wrn",
}


def is_import_path(name: str) -> bool:
    """Whether ``name`` is ``package.module:attribute`` (not a built-in name)."""
    return bool(IMPORT_PATH.match(str(name)))


def resolve(spec: str, key: str) -> Callable[..., Any]:
    """The callable an import path ``package.module:attribute`` names.

    Raises ``ValueError`` in one line naming the config ``key``, the path and what failed: the
    module does not import (and the error it raised), or it has no such attribute, or the
    attribute is not callable.
    """
    if not is_import_path(spec):
        raise ValueError(f"{key}: {spec!r} is not an import path package.module:name")
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:   # ImportError, or anything the module raises while importing
        first = str(err).splitlines()[0] if str(err) else ""
        hint = " (is its package installed or on PYTHONPATH?)" if isinstance(err, ModuleNotFoundError) else ""
        raise ValueError(f"{key}: cannot import module {module_name!r} of {spec!r}: "
                         f"{type(err).__name__}: {first}{hint}") from None
    if not hasattr(module, attr):
        public = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
        raise ValueError(f"{key}: module {module_name!r} has no {attr!r} (for {spec!r}); "
                         f"its callables: {', '.join(public[:12]) or '(none)'}")
    obj = getattr(module, attr)
    if not callable(obj):
        raise ValueError(f"{key}: {spec!r} is a {type(obj).__name__}, not a callable")
    return obj


def arch_factory(arch: str) -> Callable[..., Any]:
    """The factory of a built-in architecture name or an import path (see the module docstring)."""
    if arch not in ARCH_REGISTRY and not is_import_path(arch):
        raise ValueError(f"unknown architecture {arch!r}; allowed: {', '.join(ARCH_REGISTRY)} "
                         f"or an import path package.module:factory")
    return resolve(ARCH_REGISTRY.get(arch, arch), f"sweep.archs ({arch})")
