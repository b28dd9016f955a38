"""What both forms of the moments share: the pass's parameters, the form rule, errors, row subsamples.

Rows are samples, columns are units (features) of one *view* of a layer, as everywhere
in :mod:`convergent.moments`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convergent.settings import MomentSettings

#: Defaults of the moments pass as keyword arguments of
#: :func:`~convergent.moments.streaming_moments`; defined by
#: :class:`convergent.settings.MomentSettings` (the pipeline's ``moments`` section)
DEFAULT_MOMENT_PARAMS: dict[str, Any] = MomentSettings().as_dict()

#: the two forms a view's moments can take
PRIMAL, DUAL = "primal", "dual"


class MeasureUnavailable(ValueError):
    """A measure cannot be computed from these inputs (e.g. all units dead, n < d).

    :func:`convergent.measures.compute_measures` turns it into a row with a NaN
    value and the reason in the ``note`` column; called directly it is raised.
    (Defined here so that the moments can raise it; re-exported by
    :mod:`convergent.measures`.)
    """


class FormUnavailable(MeasureUnavailable):
    """The moments of this view were accumulated in the other form (primal d × d sums vs
    dual n × n Gram) and what was asked for cannot be had from this one. The message
    starts with ``needs ...`` so that the measure's name can be put in front of it."""


def choose_form(d1: int, d2: int, max_features: int, rows: int | None = None) -> str:
    """``"dual"`` (n × n Gram) when either width exceeds ``max_features``, or exceeds ``rows``
    (given for the views of conv layers), else ``"primal"``.

    A conv layer's ``flatten`` view is the usual case of the second rule: c·h·w features on
    fewer images. Its d × d sums would cost O(d³) per measure for nothing: every measure that
    reads that view by default (CKA, kernels, alignment, Procrustes, RSA, linear regression)
    is a function of the n × n Grams, and the CCA family is undefined when d ≥ n anyway.
    Dense layers (``rows`` None) stay primal below ``max_features``: their one view also
    serves the unit-level measures (matching, subspace, sparse, spectral), which need the
    d × d sums.
    """
    d = max(int(d1), int(d2))
    return DUAL if d > int(max_features) or (rows is not None and d > int(rows)) else PRIMAL


def subsample_indices(n_rows: int, size: int, seed: int) -> np.ndarray:
    """The declared subsample: sorted row indices, ``min(size, n_rows)`` of them, seeded."""
    size = int(min(max(size, 0), n_rows))
    if size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=size, replace=False)).astype(np.int64)


def as_2d(a: np.ndarray, name: str) -> np.ndarray:
    """``a`` as a numeric 2-D array (rows = samples), or a ValueError naming ``name``."""
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows = samples, columns = units), got shape {a.shape}")
    if a.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    return a


def paired_inputs(X: np.ndarray, Y: np.ndarray, labels: np.ndarray | None,
                  n_classes: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``X`` (n, d1), ``Y`` (n, d2), ``labels`` (n,) int and the class count, checked: both 2-D
    and numeric with the same rows (samples), ``labels`` one per row (None: a single class 0),
    ``n_classes`` (None: the largest label + 1). A ValueError names what is wrong."""
    X, Y = as_2d(X, "X"), as_2d(Y, "Y")
    n = X.shape[0]
    if Y.shape[0] != n:
        raise ValueError(f"X has {n} rows but Y has {Y.shape[0]}; rows must be the same samples")
    labels = np.zeros(n, dtype=np.int64) if labels is None else np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {labels.shape}")
    n_classes = int(labels.max()) + 1 if n_classes is None else int(n_classes)
    return X, Y, labels, n_classes

def raise_nonfinite(x: np.ndarray, y: np.ndarray, row0: int) -> None:
    """Explain why a block (first row = global row ``row0``) gave non-finite sums, as a ValueError."""
    for name, a in (("X (network A)", x), ("Y (network B)", y)):
        if a is None:
            continue
        bad = ~np.isfinite(np.asarray(a, dtype=np.float64))
        if bad.any():
            r = int(np.argwhere(bad)[0][0])
            raise ValueError(f"{name}: {int(bad.sum())} non-finite values (NaN/Inf) in the block starting "
                             f"at row {row0}; first at row {row0 + r}")
    raise ValueError(f"overflow: squared row norms are infinite in the block starting at row {row0}")


def available_memory_gib() -> float | None:
    """``MemAvailable`` of /proc/meminfo in GiB (None where there is no such file)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        return None
    return None


def check_memory(need_gib: float, what: str, hint: str) -> None:
    """Raise a ``MemoryError`` that says what needs how much, and what to change, when ``need_gib``
    exceeds the memory available now: a clear error before the allocation, rather than the
    OOM killer (or a segfault in BLAS) after it."""
    avail = available_memory_gib()
    if avail is not None and need_gib > avail:
        raise MemoryError(f"{what} needs ~{need_gib:.1f} GiB but only {avail:.1f} GiB are available; {hint}")
