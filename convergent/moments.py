"""Joint sufficient statistics of two layers, accumulated in one streaming pass.

Conventions
-----------
* Rows are samples, columns are units: ``X`` is (n, d1) for network A, ``Y`` is
  (n, d2) for network B, both in the same *view* of the same layer (see
  :mod:`convergent.activations`). ``labels`` are integer classes, one per row.
* Everything is accumulated in float64 **about a fixed shift** ``c`` (the mean of
  the first block that is seen): the stored sums are of ``x - c_x`` and
  ``y - c_y``. Centred moments then lose almost nothing to cancellation even
  when activations carry a large common offset; raw (uncentred) moments are
  reconstructed exactly from the shifted ones. Use the properties, never the
  ``s*`` fields directly:

  ========================  ==========================================  =========
  property / method         meaning                                     centred?
  ========================  ==========================================  =========
  ``n``                     rows                                         -
  ``sum_x``, ``sum_y``      Σ x_i, Σ y_i                                 raw
  ``mean_x``, ``mean_y``    column means                                 -
  ``xx``, ``yy``, ``xy``    XᵀX, YᵀY, XᵀY (subspace match, Wang et al.)  raw
  ``cxx``, ``cyy``, ``cxy`` XcᵀXc … (scatter, *not* divided by n)        centred
  ``xt``, ``yt``            XᵀT, YᵀT with T one-hot (n, c)               raw
  ``cxt``, ``cyt``          XcᵀT, YcᵀT                                   centred
  ``sum_t``                 class counts (c,)                            -
  ========================  ==========================================  =========

* The extra terms that make **debiased** linear CKA exact (Song et al. 2012
  unbiased HSIC; see :func:`convergent.measures.cka.hsic_unbiased_terms`):
  Σ‖x̃‖²‖ỹ‖², Σ x̃‖ỹ‖², Σ ỹ‖x̃‖², Σ‖x̃‖⁴, Σ x̃‖x̃‖², Σ‖ỹ‖⁴, Σ ỹ‖ỹ‖² on shifted rows
  x̃ = x - c_x; :meth:`Moments.centred_debias_terms` re-centres them exactly.
* **Alignment** terms (Imani et al. 2022): every row [x, 1] is scaled to unit
  length before its outer product is accumulated, so Φ̃ᵀΦ̃ and Φ̃ᵀT are separate
  sums (``ax``, ``axt``, ``ay``, ``ayt``; (d+1) × (d+1) and (d+1) × c; the
  constant feature is the *last* column).
* **Minibatch HSIC** (Nguyen et al. 2021): consecutive rows form minibatches of
  ``minibatch_size`` within each fold; the trailing incomplete batch is dropped
  (``mb_dropped`` counts its rows). Of a fold's complete batches at most
  ``minibatch_max`` — evenly spaced, chosen by row index only — get the unbiased
  linear HSIC of (X,Y), (X,X), (Y,Y) from their own block product; the sums and
  the count (``mb_count``) are stored. A declared subsample of batches keeps the
  cost independent of n (small BLAS calls are slow, especially on a busy machine).
* **Folds**: the rows are split, in order, into fold 0 = the first
  ``fold_split`` images and fold 1 = the rest (default ``n_images // 2``; in the
  ``positions`` view a fold holds all positions of its images). A top-level
  :class:`Moments` is the *total* (sum of its folds) and keeps the folds in
  ``folds``: ``m.total() is m``, ``m.fold(0)``, ``m.fold(1)``. Measures that fit
  something fit on fold 0 and evaluate on fold 1.
* **Subsample** for kernel measures (RBF CKA, mutual k-NN), which need n × n: a
  declared random subset of rows (``subsample_seed``, ``subsample_size``, drawn
  once with ``numpy.random.default_rng(seed).choice(n_rows, size, replace=False)``
  and sorted). To keep the moments file independent of the width, the file stores
  the subsample's **Gram matrices of centred rows** (``sub_kx = X̄ₛX̄ₛᵀ``,
  ``sub_ky``; s × s, centred by the subsample mean) rather than the rows: every
  kernel measure here needs only pairwise distances or centred inner products.

How: each block of ≤ 4096 rows is turned into one augmented matrix
B = [x̃ | ỹ | p | q | T | 1] (p = ‖x̃‖², q = ‖ỹ‖², T one-hot), built in cache-sized steps
into a buffer that is reused, and a single symmetric product BᵀB (BLAS syrk) yields
every sum above at once; the alignment terms need one more product per net on the
row-normalised rows. The two folds have separate sums, so the streaming pass can give
each fold its own thread (``threads=2``): each reads its own chunks and accumulates,
and the result is bitwise the same as with one thread.

Precision: ``precision="float64"`` multiplies in float64. ``"mixed"`` (the default
of the streaming pass, :data:`DEFAULT_MOMENT_PARAMS`) forms each ≤ 4096-row block's
products in float32 — on shifted, hence roughly centred, rows — and accumulates the
block results in float64; entries are then accurate to ~1e-6 relative to the
spread of the data (not to its offset). :meth:`Moments.from_arrays` defaults to
float64.

Conv views too wide for d × d matrices (``flatten`` of early conv layers, more than
``max_features`` features) are skipped with a logged warning that gives the memory they would
need; the measures that use such a view then report it unavailable for that layer. A layer
none of whose requested views fits is refused with a message. No sample-space (n × n)
fallback is implemented.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convergent.activations import ActivationStore, apply_view, repeat_targets, view_shape
from convergent.logs import get_logger
from convergent.logs import progress

FORMAT_VERSION = 1

#: Defaults of the moments pass (the pipeline's ``config["moments"]`` overrides them).
DEFAULT_MOMENT_PARAMS: dict[str, Any] = {
    "views": ["positions", "flatten", "pool"],  # conv views computed in the one pass
    "max_features": 4096,        # skip a view with more features (its d×d float64 sums: ~3.5 GB at 4096)
    "subsample_size": 1000,      # rows kept (as Gram matrices) for kernel measures
    "subsample_seed": 0,
    "minibatch_size": 256,       # Nguyen et al. minibatch CKA; 0 disables
    "minibatch_max": 64,         # per fold: at most this many evenly spaced minibatches get HSIC; null = all
    "minibatch_views": ["flatten"],   # conv views that get minibatch HSIC (dense layers: always)
    "alignment": True,           # accumulate row-normalised [x,1] moments (Imani et al.)
    "alignment_views": ["flatten"],   # conv views that get them (dense layers: always)
    "precision": "mixed",        # float32 block products + float64 accumulation; or "float64"
    "images_per_chunk": None,    # default: the stores' Zarr chunking
    "blas_threads": 1,           # BLAS threads during the pass (null: leave as is); see streaming_moments
    "threads": 2,                # 2: the two folds are read and accumulated in two threads; 1: one thread
}

# Stored array fields (per fold) in order; shapes use d1, d2, c.
_STAT_FIELDS = ("sx", "sy", "sxx", "syy", "sxy", "st", "sxt", "syt",
                "s_pxpy", "s_x_py", "s_y_px", "s_px2", "s_x_px", "s_py2", "s_y_py",
                "ax", "axt", "ay", "ayt",
                "mb_xy", "mb_xx", "mb_yy")
_INT_FIELDS = ("n", "mb_count", "mb_dropped")


@dataclass
class Moments:
    """Joint moments of X (n, d1) and Y (n, d2) about shifts ``shift_x``, ``shift_y``.

    All arrays are float64. Fields starting with ``s`` are sums over *shifted*
    rows; read the documented properties instead (module docstring).
    ``ax``/``axt``/``ay``/``ayt`` are ``None`` when alignment terms were not
    accumulated. ``folds`` holds the two fold Moments of a total (else ``None``).
    """

    n: int
    shift_x: np.ndarray
    shift_y: np.ndarray
    sx: np.ndarray
    sy: np.ndarray
    sxx: np.ndarray
    syy: np.ndarray
    sxy: np.ndarray
    st: np.ndarray
    sxt: np.ndarray
    syt: np.ndarray
    s_pxpy: float
    s_x_py: np.ndarray
    s_y_px: np.ndarray
    s_px2: float
    s_x_px: np.ndarray
    s_py2: float
    s_y_py: np.ndarray
    ax: np.ndarray | None = None
    axt: np.ndarray | None = None
    ay: np.ndarray | None = None
    ayt: np.ndarray | None = None
    mb_count: int = 0
    mb_dropped: int = 0
    mb_xy: float = 0.0
    mb_xx: float = 0.0
    mb_yy: float = 0.0
    folds: tuple["Moments", "Moments"] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # subsample for kernel measures (only on totals): centred Gram matrices and bookkeeping
    sub_kx: np.ndarray | None = None
    sub_ky: np.ndarray | None = None
    sub_idx: np.ndarray | None = None
    sub_labels: np.ndarray | None = None

    # ---------------------------------------------------------------- shapes
    @property
    def d1(self) -> int:
        return int(self.sx.shape[0])

    @property
    def d2(self) -> int:
        return int(self.sy.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.st.shape[0])

    @property
    def view(self) -> str:
        return str(self.meta.get("view", ""))

    # ---------------------------------------------------------------- folds
    def total(self) -> "Moments":
        """The moments of all rows (a top-level Moments already is the total)."""
        return self

    def fold(self, i: int) -> "Moments":
        """Moments of fold ``i`` (0: first half of the images in order, 1: the rest)."""
        if self.folds is None:
            raise ValueError("these moments carry no folds (they are a fold themselves)")
        return self.folds[i]

    def __add__(self, other: "Moments") -> "Moments":
        """Moments of the union of two disjoint row sets accumulated about the same shift."""
        if not (np.array_equal(self.shift_x, other.shift_x) and np.array_equal(self.shift_y, other.shift_y)):
            raise ValueError("cannot add moments accumulated about different shifts")
        kw: dict[str, Any] = {"n": self.n + other.n, "shift_x": self.shift_x, "shift_y": self.shift_y,
                              "mb_count": self.mb_count + other.mb_count,
                              "mb_dropped": self.mb_dropped + other.mb_dropped,
                              "meta": dict(self.meta)}
        for f in _STAT_FIELDS:
            a, b = getattr(self, f), getattr(other, f)
            kw[f] = None if a is None or b is None else a + b
        return Moments(**kw)

    # ---------------------------------------------------------------- raw moments
    @property
    def mean_x(self) -> np.ndarray:
        return self.shift_x + self.sx / self.n

    @property
    def mean_y(self) -> np.ndarray:
        return self.shift_y + self.sy / self.n

    @property
    def sum_x(self) -> np.ndarray:
        return self.sx + self.n * self.shift_x

    @property
    def sum_y(self) -> np.ndarray:
        return self.sy + self.n * self.shift_y

    @property
    def sum_t(self) -> np.ndarray:
        return self.st

    @staticmethod
    def _raw(s_ab: np.ndarray, ca: np.ndarray, sa: np.ndarray, cb: np.ndarray, sb: np.ndarray, n: int
             ) -> np.ndarray:
        # Σ (a~+ca)(b~+cb)ᵀ = Σa~b~ᵀ + ca Σb~ᵀ + Σa~ cbᵀ + n ca cbᵀ
        return s_ab + np.outer(ca, sb) + np.outer(sa, cb) + n * np.outer(ca, cb)

    @property
    def xx(self) -> np.ndarray:
        """Raw (uncentred) XᵀX, (d1, d1)."""
        return self._raw(self.sxx, self.shift_x, self.sx, self.shift_x, self.sx, self.n)

    @property
    def yy(self) -> np.ndarray:
        """Raw (uncentred) YᵀY, (d2, d2)."""
        return self._raw(self.syy, self.shift_y, self.sy, self.shift_y, self.sy, self.n)

    @property
    def xy(self) -> np.ndarray:
        """Raw (uncentred) XᵀY, (d1, d2)."""
        return self._raw(self.sxy, self.shift_x, self.sx, self.shift_y, self.sy, self.n)

    @property
    def xt(self) -> np.ndarray:
        """Raw XᵀT, (d1, c)."""
        return self.sxt + np.outer(self.shift_x, self.st)

    @property
    def yt(self) -> np.ndarray:
        """Raw YᵀT, (d2, c)."""
        return self.syt + np.outer(self.shift_y, self.st)

    # ---------------------------------------------------------------- centred moments
    @property
    def cxx(self) -> np.ndarray:
        """Centred scatter Σ(x-μx)(x-μx)ᵀ, (d1, d1); divide by n for the covariance."""
        return self.sxx - np.outer(self.sx, self.sx) / self.n

    @property
    def cyy(self) -> np.ndarray:
        return self.syy - np.outer(self.sy, self.sy) / self.n

    @property
    def cxy(self) -> np.ndarray:
        """Centred cross scatter Σ(x-μx)(y-μy)ᵀ, (d1, d2)."""
        return self.sxy - np.outer(self.sx, self.sy) / self.n

    @property
    def cxt(self) -> np.ndarray:
        """Σ(x-μx)tᵀ, (d1, c)."""
        return self.sxt - np.outer(self.sx, self.st) / self.n

    @property
    def cyt(self) -> np.ndarray:
        return self.syt - np.outer(self.sy, self.st) / self.n

    @property
    def var_x(self) -> np.ndarray:
        """Population variance of each unit of X, (d1,), clipped at 0 against rounding."""
        return np.maximum(np.diag(self.sxx) - self.sx ** 2 / self.n, 0.0) / self.n

    @property
    def var_y(self) -> np.ndarray:
        return np.maximum(np.diag(self.syy) - self.sy ** 2 / self.n, 0.0) / self.n

    def centred_debias_terms(self) -> dict[str, float]:
        """Terms of the unbiased HSIC on rows centred at the mean (a_i=‖x_i-μx‖², b_i=‖y_i-μy‖²).

        Returns ``sum_ab`` = Σ a_i b_i, ``sum_aa`` = Σ a_i², ``sum_bb`` = Σ b_i²,
        ``tr_x`` = Σ a_i, ``tr_y`` = Σ b_i, obtained by expanding
        a_i = p_i - 2δxᵀx̃_i + ‖δx‖² (p_i = ‖x̃_i‖², δx = mean of x̃) exactly.
        """
        n = self.n
        dx, dy = self.sx / n, self.sy / n
        nx2, ny2 = float(dx @ dx), float(dy @ dy)
        sp, sq = float(np.trace(self.sxx)), float(np.trace(self.syy))   # Σp_i, Σq_i
        tr_x = sp - n * nx2          # Σ a_i = Σp - 2δᵀs + n‖δ‖² with s = nδ
        tr_y = sq - n * ny2
        sx_dx, sy_dy = float(self.sx @ dx), float(self.sy @ dy)
        sum_ab = (self.s_pxpy
                  - 2 * float(dy @ self.s_y_px) + ny2 * sp
                  - 2 * float(dx @ self.s_x_py) + 4 * float(dx @ self.sxy @ dy) - 2 * ny2 * sx_dx
                  + nx2 * sq - 2 * nx2 * sy_dy + n * nx2 * ny2)
        sum_aa = (self.s_px2 - 4 * float(dx @ self.s_x_px) + 2 * nx2 * sp
                  + 4 * float(dx @ self.sxx @ dx) - 4 * nx2 * sx_dx + n * nx2 ** 2)
        sum_bb = (self.s_py2 - 4 * float(dy @ self.s_y_py) + 2 * ny2 * sq
                  + 4 * float(dy @ self.syy @ dy) - 4 * ny2 * sy_dy + n * ny2 ** 2)
        return {"sum_ab": sum_ab, "sum_aa": sum_aa, "sum_bb": sum_bb, "tr_x": tr_x, "tr_y": tr_y}

    def swapped(self) -> "Moments":
        """The same moments with the roles of X and Y exchanged."""
        kw = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for a, b in [("shift_x", "shift_y"), ("sx", "sy"), ("sxx", "syy"), ("sxt", "syt"),
                     ("s_x_py", "s_y_px"), ("s_px2", "s_py2"), ("s_x_px", "s_y_py"),
                     ("ax", "ay"), ("axt", "ayt"), ("mb_xx", "mb_yy"), ("sub_kx", "sub_ky")]:
            kw[a], kw[b] = kw[b], kw[a]
        kw["sxy"] = self.sxy.T
        kw["folds"] = None if self.folds is None else tuple(f.swapped() for f in self.folds)
        return Moments(**kw)

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_arrays(cls, X: np.ndarray, Y: np.ndarray, labels: np.ndarray | None = None,
                    n_classes: int | None = None, fold_split: int | None = None, *,
                    subsample_size: int = 0, subsample_seed: int = 0, minibatch_size: int = 0,
                    minibatch_max: int | None = None, alignment: bool = True, precision: str = "float64", chunk_rows: int | None = None,
                    meta: dict[str, Any] | None = None) -> "Moments":
        """Moments of in-memory X (n, d1), Y (n, d2); rows are samples.

        ``labels``: int classes (n,) or None (then a single class 0). ``fold_split``:
        first row of fold 1 (default n // 2). ``chunk_rows`` feeds the rows in
        blocks (for testing that blocking does not change anything).
        """
        X, Y = _as_2d(X, "X"), _as_2d(Y, "Y")
        n = X.shape[0]
        if Y.shape[0] != n:
            raise ValueError(f"X has {n} rows but Y has {Y.shape[0]}; rows must be the same samples")
        labels = np.zeros(n, dtype=np.int64) if labels is None else np.asarray(labels)
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {labels.shape}")
        n_classes = int(labels.max()) + 1 if n_classes is None else int(n_classes)
        acc = MomentAccumulator(X.shape[1], Y.shape[1], n_classes, n_rows=n,
                                fold_split=n // 2 if fold_split is None else int(fold_split),
                                subsample=subsample_indices(n, subsample_size, subsample_seed),
                                minibatch_size=minibatch_size, alignment=alignment, precision=precision,
                                minibatch_max=minibatch_max)
        step = chunk_rows or max(n, 1)
        for s in range(0, n, step):
            acc.update(X[s:s + step], Y[s:s + step], labels[s:s + step])
        info = {"subsample_seed": int(subsample_seed), "subsample_size": int(subsample_size),
                "minibatch_size": int(minibatch_size), "minibatch_max": minibatch_max}
        return acc.result({**info, **(meta or {})})


def _as_2d(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows = samples, columns = units), got shape {a.shape}")
    if a.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    return a


def subsample_indices(n_rows: int, size: int, seed: int) -> np.ndarray:
    """The declared subsample: sorted row indices, ``min(size, n_rows)`` of them, seeded."""
    size = int(min(max(size, 0), n_rows))
    if size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=size, replace=False)).astype(np.int64)


class _Layout:
    """Columns of the augmented block B = [x̃ | ỹ | p | q | T | 1] whose BᵀB holds every sum.

    x̃ = x - c_x, ỹ = y - c_y (shifted rows), p = ‖x̃‖², q = ‖ỹ‖² (per row), T one-hot
    labels, 1 a constant: one symmetric product per block gives XᵀX, XᵀY, YᵀY, the
    column sums, XᵀT, the class counts and every debiasing term (Σ x̃p, Σ pq, Σ p², …),
    so the only passes over the data are forming B and the BLAS product.
    """

    def __init__(self, d1: int, d2: int, c: int):
        self.d1, self.d2, self.c = d1, d2, c
        self.x = slice(0, d1)
        self.y = slice(d1, d1 + d2)
        self.p = d1 + d2
        self.q = d1 + d2 + 1
        self.t = slice(d1 + d2 + 2, d1 + d2 + 2 + c)
        self.one = d1 + d2 + 2 + c
        self.width = d1 + d2 + 3 + c


def _unbiased_hsic_batch(g: np.ndarray, L: _Layout) -> tuple[float, float, float]:
    """Song et al. unbiased linear HSIC of (X,Y), (X,X), (Y,Y) of one minibatch, from its BᵀB (float64).

    Feature-space form (K = x̃x̃ᵀ is never formed; the estimator is translation invariant,
    so the common shift does not matter): with s = Σx̃, K1 = x̃s,
    tr(K̃L̃) = ‖x̃ᵀỹ‖² - Σpq,  1ᵀK̃1 = ‖s_x‖² - Σp,
    1ᵀK̃L̃1 = (K1 - p)ᵀ(L1 - q) = s_xᵀ(x̃ᵀỹ)s_y - s_xᵀ(x̃ᵀq) - (pᵀỹ)s_y + pᵀq.
    """
    b = g[L.one, L.one]
    x, y, p, q, one = L.x, L.y, L.p, L.q, L.one
    sx, sy = g[one, x], g[one, y]
    gxx, gyy, gxy = g[x, x], g[y, y], g[x, y]
    ok, ol = float(sx @ sx - g[one, p]), float(sy @ sy - g[one, q])
    kl = float(sx @ gxy @ sy - sx @ g[x, q] - g[p, y] @ sy + g[p, q])
    kk = float(sx @ gxx @ sx - 2 * sx @ g[x, p] + g[p, p])
    ll = float(sy @ gyy @ sy - 2 * sy @ g[y, q] + g[q, q])
    c1, c2, c3 = (b - 1) * (b - 2), 2.0 / (b - 2), b * (b - 3)

    def h(frob2: float, diag: float, sa: float, sb: float, cross: float) -> float:
        return (frob2 - diag + sa * sb / c1 - c2 * cross) / c3

    sq = np.square(g[:one, :one])       # one pass; Frobenius norms of the three blocks from it
    return (h(float(sq[x, y].sum()), g[p, q], ok, ol, kl),
            h(float(sq[x, x].sum()), g[p, p], ok, ok, kk),
            h(float(sq[y, y].sum()), g[q, q], ol, ol, ll))


class _FoldAccumulator:
    """Running float64 sums for one fold: the global rows ``[first, first + rows)``, fed in order.

    Each :meth:`update` gets ≤ ``block_rows`` raw rows. They are built into the augmented
    block B (see :class:`_Layout`; float32 for ``mixed`` precision, else float64) and, with
    alignment on, the row-normalised blocks ``[φ | T]`` of each net, in buffers the fold
    owns and reuses; one product per block is added into float64 accumulators. A fold's
    state is touched only by its own updates, so two folds may be fed from two threads.

    Minibatch HSIC: the fold's rows form ``n_batches = rows // mb`` consecutive
    minibatches (the trailing incomplete one is dropped); at most ``mb_max`` of
    them, evenly spaced (every ``stride``-th, from the first), get their unbiased
    HSIC computed from their own BᵀB. The selection depends only on row indices,
    never on how the rows are blocked.
    """

    #: rows per product: bounds the float32 accumulation error in ``mixed`` and keeps BLAS efficient
    block_rows = 4096
    #: rows built per step: the step's slice of the block buffer stays in the CPU cache while the
    #: shifted rows, their norms and the labels are written (on the 2-core dev VM, d = 256: 0.25-0.34 s
    #: per 0.5 M rows, against ~0.6 s for a fresh 16k-row block per chunk, from cache misses and page faults)
    build_rows = 512

    def __init__(self, L: _Layout, dtype: type, first: int, rows: int, alignment: bool, mb: int,
                 mb_max: int | None, subsample: np.ndarray):
        self.L, self.dtype, self.first, self.rows = L, dtype, int(first), int(rows)
        self.mb, self.alignment = mb, alignment
        self.g = np.zeros((L.width, L.width))
        if alignment:
            self.ax = np.zeros((L.d1 + 1 + L.c, L.d1 + 1 + L.c))
            self.ay = np.zeros((L.d2 + 1 + L.c, L.d2 + 1 + L.c))
        self.pos = 0                            # fold rows seen so far
        self.n_batches = rows // mb if mb else 0
        take = self.n_batches if not mb_max else min(self.n_batches, int(mb_max))
        self.stride = max(1, self.n_batches // take) if take else 1
        self.mb_selected = take
        self.mb_count = 0
        self.mb_sums = np.zeros(3)
        self._pending: list[np.ndarray] = []    # rows of a selected batch that straddles blocks
        self.sub = subsample[(subsample >= first) & (subsample < first + rows)]   # global row indices
        self.sub_rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._buf: list[np.ndarray] = []        # block buffers, see _build

    def update(self, x: np.ndarray, y: np.ndarray, t: np.ndarray, row0: int,
               shift: tuple[np.ndarray, np.ndarray]) -> None:
        """Add the fold's next ≤ ``block_rows`` rows: raw X (b, d1), Y (b, d2), int labels (b,).

        ``row0`` is the global index of the first row (checked against the fold's order);
        ``shift`` the (c_x, c_y) to subtract, in the product dtype.
        """
        b = x.shape[0]
        if b == 0:
            return
        if row0 != self.first + self.pos or b > self.block_rows or self.pos + b > self.rows:
            raise ValueError(f"fold rows [{self.first}, {self.first + self.rows}) must arrive in order in blocks "
                             f"of <= {self.block_rows}: expected row {self.first + self.pos}, got rows "
                             f"[{row0}, {row0 + b})")
        parts = self._build(x, y, t, row0, shift)
        B = parts[0]
        self.g += B.T @ B                       # numpy dispatches aᵀa to BLAS syrk
        if self.alignment:
            for acc, phi in ((self.ax, parts[1]), (self.ay, parts[2])):
                acc += phi.T @ phi
        if self.mb_selected:
            self._minibatches(B)
        if self.sub.size:
            lo, hi = np.searchsorted(self.sub, [row0, row0 + b])
            if hi > lo:
                local = self.sub[lo:hi] - row0
                self.sub_rows.append((np.asarray(x[local], dtype=np.float64),
                                      np.asarray(y[local], dtype=np.float64), t[local]))
        self.pos += b

    def _build(self, x: np.ndarray, y: np.ndarray, t: np.ndarray, row0: int,
               shift: tuple[np.ndarray, np.ndarray]) -> list[np.ndarray]:
        """Block parts [B] or [B, [φx | T], [φy | T]], views of buffers the next call reuses."""
        L, dt, b = self.L, self.dtype, x.shape[0]
        if not self._buf or self._buf[0].shape[0] < b:
            # as many rows as the largest block so far: a wide `flatten` view comes in blocks of
            # a chunk's images, far fewer than block_rows
            B = np.empty((b, L.width), dtype=dt)
            B[:, L.one] = 1
            self._buf = [B] + ([np.empty((b, d + 1 + L.c), dtype=dt) for d in (L.d1, L.d2)]
                               if self.alignment else [])
        parts = [buf[:b] for buf in self._buf]
        B = parts[0]
        for s in range(0, b, self.build_rows):
            e = min(s + self.build_rows, b)
            Bs = B[s:e]
            np.subtract(x[s:e], shift[0], out=Bs[:, L.x], casting="unsafe")
            np.subtract(y[s:e], shift[1], out=Bs[:, L.y], casting="unsafe")
            # row norms: vecdot's inner loop is ~30 % faster than einsum("ij,ij->i") on these slices
            np.vecdot(Bs[:, L.x], Bs[:, L.x], out=Bs[:, L.p])
            np.vecdot(Bs[:, L.y], Bs[:, L.y], out=Bs[:, L.q])
            if not np.isfinite(Bs[:, L.p:L.q + 1]).all():   # a NaN/Inf poisons its row's norm
                _raise_nonfinite(x, y, row0)
            Bs[:, L.t] = 0
            Bs[np.arange(e - s), L.t.start + t[s:e]] = 1
            if self.alignment:
                for Phi, raw, d in ((parts[1], x, L.d1), (parts[2], y, L.d2)):
                    # rows [x, 1] scaled to unit length, then the labels: [φ | T];
                    # squared norms in the product precision: no cancellation (all terms >= 0)
                    r = np.asarray(raw[s:e], dtype=dt)
                    inv = 1.0 / np.sqrt(np.vecdot(r, r).astype(np.float64) + 1.0)
                    np.multiply(r, inv.astype(dt)[:, None], out=Phi[s:e, :d], casting="unsafe")
                    Phi[s:e, d] = inv
                    Phi[s:e, d + 1:] = Bs[:, L.t]
        return parts

    def _selected(self, k: int) -> bool:
        return k < self.n_batches and k % self.stride == 0 and k // self.stride < self.mb_selected

    def _minibatches(self, B: np.ndarray) -> None:
        mb, start, stop = self.mb, self.pos, self.pos + B.shape[0]
        k = start // mb
        while k * mb < stop:
            lo, hi = max(k * mb, start), min((k + 1) * mb, stop)
            if self._selected(k):
                self._pending.append(B[lo - start:hi - start])
                if hi == (k + 1) * mb:          # batch complete
                    Bb = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
                    self._pending = []
                    g = (Bb.T @ Bb).astype(np.float64, copy=False)
                    self.mb_sums += _unbiased_hsic_batch(g, self.L)
                    self.mb_count += 1
                else:
                    self._pending[-1] = self._pending[-1].copy()   # the block buffer is reused
            k += 1

    def result(self, shift_x: np.ndarray, shift_y: np.ndarray, meta: dict[str, Any]) -> Moments:
        L, g = self.L, self.g
        x, y, p, q, t, one = L.x, L.y, L.p, L.q, L.t, L.one
        al = self.alignment

        def phi_parts(a: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
            return a[:d + 1, :d + 1].copy(), a[:d + 1, d + 1:].copy()

        ax, axt = phi_parts(self.ax, L.d1) if al else (None, None)
        ay, ayt = phi_parts(self.ay, L.d2) if al else (None, None)
        return Moments(
            n=int(round(g[one, one])), shift_x=shift_x, shift_y=shift_y, sx=g[one, x].copy(), sy=g[one, y].copy(),
            sxx=g[x, x].copy(), syy=g[y, y].copy(), sxy=g[x, y].copy(), st=g[one, t].copy(),
            sxt=g[x, t].copy(), syt=g[y, t].copy(), s_pxpy=float(g[p, q]),
            s_x_py=g[x, q].copy(), s_y_px=g[y, p].copy(), s_px2=float(g[p, p]),
            s_x_px=g[x, p].copy(), s_py2=float(g[q, q]), s_y_py=g[y, q].copy(),
            ax=ax, axt=axt, ay=ay, ayt=ayt,
            mb_count=int(self.mb_count), mb_dropped=int(self.pos - self.n_batches * self.mb) if self.mb else 0,
            mb_xy=float(self.mb_sums[0]), mb_xx=float(self.mb_sums[1]), mb_yy=float(self.mb_sums[2]),
            meta=dict(meta))


def _raise_nonfinite(x: np.ndarray, y: np.ndarray, row0: int) -> None:
    """Explain why a block (first row = global row ``row0``) gave non-finite sums, as a ValueError."""
    for name, a in (("X (network A)", x), ("Y (network B)", y)):
        bad = ~np.isfinite(np.asarray(a, dtype=np.float64))
        if bad.any():
            r = int(np.argwhere(bad)[0][0])
            raise ValueError(f"{name}: {int(bad.sum())} non-finite values (NaN/Inf) in the block starting "
                             f"at row {row0}; first at row {row0 + r}")
    raise ValueError(f"overflow: squared row norms are infinite in the block starting at row {row0}")


class MomentAccumulator:
    """Feed row blocks of X (b, d1), Y (b, d2), labels (b,); get :class:`Moments`.

    ``n_rows`` (total rows, for checking) and ``fold_split`` (first row of fold 1)
    are fixed up front so a block straddling the split is divided exactly.
    ``subsample``: sorted global row indices whose rows are kept for the kernel
    Gram matrices.

    Blocks are fed in row order (:meth:`update` without ``row0``), or, to use two
    threads, each fold's rows in order from its own thread (``row0`` given, after
    :meth:`set_shift`); the result is the same either way.
    """

    def __init__(self, d1: int, d2: int, n_classes: int, n_rows: int, fold_split: int,
                 subsample: np.ndarray | None = None, minibatch_size: int = 0, alignment: bool = True,
                 precision: str = "float64", minibatch_max: int | None = None):
        if precision not in ("float64", "mixed"):
            raise ValueError(f"precision must be 'float64' or 'mixed', got {precision!r}")
        if not 0 <= fold_split <= n_rows:
            raise ValueError(f"fold_split {fold_split} outside [0, {n_rows}]")
        if minibatch_size and minibatch_size < 4:
            raise ValueError("minibatch_size must be 0 (off) or >= 4 (unbiased HSIC needs 4 rows)")
        self.L = _Layout(int(d1), int(d2), int(n_classes))
        self.d1, self.d2, self.c = self.L.d1, self.L.d2, self.L.c
        self.n_rows, self.fold_split = int(n_rows), int(fold_split)
        self.precision = precision
        self.dtype = np.float32 if precision == "mixed" else np.float64
        self.alignment = bool(alignment)
        self.sub = np.zeros(0, np.int64) if subsample is None else np.asarray(subsample, dtype=np.int64)
        self.folds = [_FoldAccumulator(self.L, self.dtype, first, rows, self.alignment, int(minibatch_size),
                                       minibatch_max, self.sub)
                      for first, rows in ((0, self.fold_split), (self.fold_split, self.n_rows - self.fold_split))]
        self.offset = 0                         # next row of sequential feeding
        self.shift_x: np.ndarray | None = None
        self.shift_y: np.ndarray | None = None
        self._shift_dt: tuple[np.ndarray, np.ndarray] | None = None

    def set_shift(self, x: np.ndarray, y: np.ndarray) -> None:
        """Fix the shift (c_x, c_y) as the column means of a block (the first one, by convention)."""
        sx, sy = x.mean(axis=0, dtype=np.float64), y.mean(axis=0, dtype=np.float64)
        if not (np.isfinite(sx).all() and np.isfinite(sy).all()):
            _raise_nonfinite(x, y, 0)
        dt = self.dtype
        # in the product dtype, so that x - shift is one rounding and the shift is exactly recorded
        self.shift_x, self.shift_y = sx.astype(dt).astype(np.float64), sy.astype(dt).astype(np.float64)
        self._shift_dt = (self.shift_x.astype(dt), self.shift_y.astype(dt))

    def update(self, x: np.ndarray, y: np.ndarray, t: np.ndarray, row0: int | None = None) -> None:
        """Add a block of rows (same rows of both networks, same labels) starting at global row
        ``row0`` (default: right after the previous block). Without :meth:`set_shift`, the
        first block must start at row 0: the shift is its mean."""
        b = x.shape[0]
        if y.shape[0] != b or t.shape[0] != b:
            raise ValueError(f"block row counts differ: X {x.shape[0]}, Y {y.shape[0]}, labels {t.shape[0]}")
        if x.shape[1] != self.d1 or y.shape[1] != self.d2:
            raise ValueError(f"block widths {x.shape[1]}, {y.shape[1]} != declared {self.d1}, {self.d2}")
        row0 = self.offset if row0 is None else int(row0)
        if row0 < 0 or row0 + b > self.n_rows:
            raise ValueError(f"rows [{row0}, {row0 + b}) fed, but only {self.n_rows} rows were declared")
        if b == 0:
            return
        t = np.asarray(t)
        if t.min() < 0 or t.max() >= self.c:
            raise ValueError(f"labels must lie in [0, {self.c}); got range [{t.min()}, {t.max()}]")
        t = t.astype(np.intp)
        if self._shift_dt is None:
            if row0 != 0:
                raise ValueError("the shift is the mean of the first block: feed rows from row 0 or call set_shift")
            # the mean of the first block: later sums are of small, centred-ish numbers
            self.set_shift(x, y)
        for fold in self.folds:                 # split at the fold boundary, then into product blocks
            lo, hi = max(row0, fold.first), min(row0 + b, fold.first + fold.rows)
            for s in range(lo, hi, fold.block_rows):
                e = min(s + fold.block_rows, hi)
                fold.update(x[s - row0:e - row0], y[s - row0:e - row0], t[s - row0:e - row0], s, self._shift_dt)
        self.offset = row0 + b

    def result(self, meta: dict[str, Any] | None = None) -> Moments:
        """The total :class:`Moments` (with both folds); checks every declared row was fed."""
        fed = sum(f.pos for f in self.folds)
        if fed != self.n_rows:
            raise ValueError(f"{fed} rows fed but {self.n_rows} declared")
        if self.n_rows == 0:
            raise ValueError("no rows")
        meta = dict(meta or {})
        meta.update(fold_split=self.fold_split, n_rows=self.n_rows, precision=self.precision)
        folds = tuple(f.result(self.shift_x, self.shift_y, {**meta, "fold": i}) for i, f in enumerate(self.folds))
        if any(f.n == 0 for f in folds):
            raise ValueError(f"a fold is empty (n={self.n_rows}, fold_split={self.fold_split})")
        total = folds[0] + folds[1]
        total.meta = meta
        total.folds = folds
        if self.sub.size:
            rows = [r for f in self.folds for r in f.sub_rows]
            xs, ys = np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows])
            total.sub_kx, total.sub_ky = _centred_gram(xs), _centred_gram(ys)
            total.sub_idx = self.sub.copy()
            total.sub_labels = np.concatenate([r[2] for r in rows]).astype(np.int64)
        return total


def moments_memory_gib(d1: int, d2: int, n_classes: int, alignment: bool) -> float:
    """Rough peak memory of one view's float64 sums: the augmented Gram matrix and the two
    nets' alignment matrices, for two folds and their total, plus a float32 block product."""
    w = d1 + d2 + n_classes + 3
    per_fold = w * w + (2 * (max(d1, d2) + 1 + n_classes) ** 2 if alignment else 0)
    return (3 * 8 * per_fold + 4 * w * w) / 2**30


def _centred_gram(a: np.ndarray) -> np.ndarray:
    """X̄X̄ᵀ of rows centred by their mean, (s, s)."""
    a = a - a.mean(axis=0)
    return a @ a.T


# ------------------------------------------------------------------------- streaming

def _prefetch(it: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Run ``it`` in a background thread so Zarr decoding overlaps the products.

    If the consumer stops early (an exception, e.g. non-finite values), the producer
    is told to stop and the thread is joined, so nothing is left blocked.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in it:
                if not put(item):
                    return
        except BaseException as err:  # forwarded to the consumer
            put(err)
            return
        put(done)

    th = threading.Thread(target=work, name="moments-prefetch", daemon=True)
    th.start()
    try:
        while True:
            item = q.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        th.join()


def streaming_moments(store_a: ActivationStore, store_b: ActivationStore, layer: str,
                      views: Sequence[str] | None = None, *, layer_b: str | None = None,
                      max_features: int = DEFAULT_MOMENT_PARAMS["max_features"],
                      subsample_size: int = DEFAULT_MOMENT_PARAMS["subsample_size"],
                      subsample_seed: int = DEFAULT_MOMENT_PARAMS["subsample_seed"],
                      minibatch_size: int = DEFAULT_MOMENT_PARAMS["minibatch_size"],
                      minibatch_max: int | None = DEFAULT_MOMENT_PARAMS["minibatch_max"],
                      minibatch_views: Sequence[str] = tuple(DEFAULT_MOMENT_PARAMS["minibatch_views"]),
                      alignment: bool = DEFAULT_MOMENT_PARAMS["alignment"],
                      alignment_views: Sequence[str] = tuple(DEFAULT_MOMENT_PARAMS["alignment_views"]),
                      precision: str = DEFAULT_MOMENT_PARAMS["precision"],
                      images_per_chunk: int | None = None, fold_split: int | None = None,
                      prefetch: bool = True,
                      blas_threads: int | None = DEFAULT_MOMENT_PARAMS["blas_threads"],
                      threads: int = DEFAULT_MOMENT_PARAMS["threads"]) -> dict[str, Moments]:
    """One pass over ``layer`` of both stores, in lockstep, computing every view.

    Returns ``{view: Moments}`` (totals with folds). For a dense layer all views
    are the same data: it is accumulated once, every requested view maps to the
    same object and its ``meta['view']`` is ``"dense"``. ``fold_split`` is in *images* (default n_images // 2).

    A conv view wider than ``max_features`` is left out of the result (logged); raises
    ``ValueError`` for different numbers of images, different targets, different view
    shapes, a layer none of whose views fits (message names the views and suggests
    ``pool``/``positions``), or non-finite activations.

    ``threads`` (default 2): with 2, fold 0 and fold 1 are each read, built and
    multiplied by their own thread (the boundary chunk is read by both); with 1, one
    thread accumulates while a prefetch thread (``prefetch``) decodes the next chunk.
    The result is the same. ``blas_threads`` (default 1) caps BLAS threads *per
    thread*: multi-threaded OpenBLAS on these block sizes degrades by up to 20× when
    cores are oversubscribed (measured on the 2-core dev machine); ``None`` leaves the
    setting alone. bench/bench_moments.py compares the settings.
    """
    if threads not in (1, 2):
        raise ValueError(f"threads must be 1 or 2 (one per fold), got {threads!r}")
    if blas_threads is None:
        return _streaming_moments(store_a, store_b, layer, views, layer_b, max_features, subsample_size,
                                  subsample_seed, minibatch_size, minibatch_max, minibatch_views, alignment,
                                  alignment_views, precision, images_per_chunk, fold_split, prefetch, threads)
    from threadpoolctl import threadpool_limits   # installed with scikit-learn

    with threadpool_limits(limits=int(blas_threads), user_api="blas"):
        return _streaming_moments(store_a, store_b, layer, views, layer_b, max_features, subsample_size,
                                  subsample_seed, minibatch_size, minibatch_max, minibatch_views, alignment,
                                  alignment_views, precision, images_per_chunk, fold_split, prefetch, threads)


def _streaming_moments(store_a: ActivationStore, store_b: ActivationStore, layer: str,
                       views: Sequence[str] | None, layer_b: str | None, max_features: int, subsample_size: int,
                       subsample_seed: int, minibatch_size: int, minibatch_max: int | None,
                       minibatch_views: Sequence[str], alignment: bool, alignment_views: Sequence[str],
                       precision: str, images_per_chunk: int | None, fold_split: int | None, prefetch: bool,
                       threads: int
                       ) -> dict[str, Moments]:
    views = list(DEFAULT_MOMENT_PARAMS["views"] if views is None else views)
    layer_b = layer if layer_b is None else layer_b
    arr_a, arr_b = store_a.raw(layer), store_b.raw(layer_b)
    n = store_a.n_images
    if store_b.n_images != n or arr_a.shape[0] != n or arr_b.shape[0] != n:
        raise ValueError(f"stores disagree on the number of images: {store_a.path}: {arr_a.shape[0]}, "
                         f"{store_b.path}: {arr_b.shape[0]} (targets {n}, {store_b.n_images})")
    if n == 0:
        raise ValueError(f"{store_a.path} and {store_b.path} hold no images")
    labels = store_a.targets()
    if not np.array_equal(labels, store_b.targets()):
        bad = int(np.sum(labels != store_b.targets()))
        raise ValueError(f"targets differ between {store_a.path} and {store_b.path} ({bad} of {n} images): "
                         "the stores do not hold the same samples in the same order")
    if labels.size and labels.min() < 0:
        raise ValueError("targets must be non-negative class labels")
    n_classes = int(labels.max()) + 1 if labels.size else 1
    n_classes = max(n_classes, int(store_a.attrs.get("n_classes", 0) or 0))
    dense = arr_a.ndim == 2 and arr_b.ndim == 2
    compute = views[:1] if dense else views
    split_img = n // 2 if fold_split is None else int(fold_split)
    accs: dict[str, MomentAccumulator] = {}
    too_wide: list[str] = []
    for v in compute:
        rows_a, da = view_shape(arr_a.shape, v)
        rows_b, db = view_shape(arr_b.shape, v)
        if rows_a != rows_b:
            raise ValueError(f"view {v!r}: {layer} has {rows_a} rows in A but {rows_b} in B "
                             f"(raw shapes {arr_a.shape}, {arr_b.shape})")
        if max(da, db) > max_features:
            too_wide.append(f"view {v!r} of layer {layer!r} has {max(da, db)} features (raw shape "
                            f"{arr_a.shape}), more than max_features={max_features}: its float64 sums "
                            f"would need ~{moments_memory_gib(da, db, n_classes, alignment):.1f} GiB")
            continue
        per_image = rows_a // n
        acc = MomentAccumulator(da, db, n_classes, n_rows=rows_a, fold_split=split_img * per_image,
                                subsample=subsample_indices(rows_a, subsample_size, subsample_seed),
                                minibatch_size=minibatch_size if (dense or v in minibatch_views) else 0,
                                alignment=alignment and (dense or v in alignment_views), precision=precision,
                                minibatch_max=minibatch_max)
        accs[v] = acc
    if too_wide and not accs:
        raise ValueError("; ".join(too_wide) + ". Use the 'pool' or 'positions' view for this layer, "
                         "or raise max_features.")
    for reason in too_wide:
        get_logger().warning("skipped %s; measures that use this view report it unavailable", reason)
    step = int(images_per_chunk or arr_a.chunks[0])
    rows_per_image = {v: acc.n_rows // n for v, acc in accs.items()}

    def read(s: int, e: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        return np.asarray(arr_a[s:e]), np.asarray(arr_b[s:e]), labels[s:e], s

    def chunks(lo: int, hi: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
        """The chunks overlapping images [lo, hi), cut to it (a chunk straddling a fold
        boundary is read by both folds' threads, each keeping its part)."""
        for s in range(lo - lo % step, hi, step):
            yield read(max(s, lo), min(s + step, hi))

    a, b, _, _ = read(0, min(step, n))
    for v, acc in accs.items():                 # every view's shift: the mean of the first chunk
        acc.set_shift(apply_view(a, v), apply_view(b, v))
    folds = [(0, split_img), (split_img, n)] if threads > 1 else [(0, n)]
    total = sum(-(-hi // step) - lo // step for lo, hi in folds if hi > lo)
    tick = progress(total, f"moments of {layer}: chunk")   # the per-chunk progress of the job's log
    done = [0]
    lock, failed = threading.Lock(), threading.Event()

    def run(lo: int, hi: int) -> None:
        it = chunks(lo, hi)
        for a, b, t, s in (_prefetch(it) if prefetch and threads == 1 else it):
            if failed.is_set():
                return
            for v, acc in accs.items():
                acc.update(apply_view(a, v), apply_view(b, v), repeat_targets(t, arr_a.shape, v),
                           row0=s * rows_per_image[v])
            with lock:
                done[0] += 1
                tick(done[0])

    if len(folds) == 1:
        run(*folds[0])
    else:
        # each fold's sums are separate (MomentAccumulator), so each fold gets a thread that reads
        # and accumulates its own rows: Zarr decoding, building and the products (which release
        # the GIL) of the two folds run side by side on two cores
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="moments-fold") as pool:
            futures = [pool.submit(run, lo, hi) for lo, hi in folds]
            try:
                wait(futures, return_when=FIRST_EXCEPTION)
            finally:
                failed.set()                    # a failed fold stops the other (no-op once both are done)
            for f in futures:
                f.result()
    out: dict[str, Moments] = {}
    for v, acc in accs.items():
        out[v] = acc.result({"layer": layer, "layer_b": layer_b, "view": "dense" if dense else v,
                             "kind": "dense" if dense else "conv", "raw_shape_a": list(arr_a.shape),
                             "raw_shape_b": list(arr_b.shape), "dtype_a": str(arr_a.dtype),
                             "dtype_b": str(arr_b.dtype), "n_images": n, "fold_split_images": split_img,
                             "subsample_seed": int(subsample_seed), "subsample_size": int(subsample_size),
                             "minibatch_size": int(minibatch_size) if (dense or v in minibatch_views) else 0,
                             "minibatch_max": minibatch_max,
                             "store_a": str(store_a.path),
                             "store_b": str(store_b.path)})
    if dense:
        for v in views[1:]:
            out[v] = out[views[0]]
    return out


def accumulate(chunks: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], n_rows: int, n_classes: int,
               fold_split: int | None = None, **kw: Any) -> Moments:
    """Moments from an iterable of ``(X_block, Y_block, labels_block)`` in row order.

    ``n_rows`` is the total number of rows (needed up front for the fold split,
    default ``n_rows // 2``); ``kw`` as for :class:`MomentAccumulator`
    (``subsample_size``/``subsample_seed`` are turned into indices).
    """
    size, seed = kw.pop("subsample_size", 0), kw.pop("subsample_seed", 0)
    acc = None
    for x, y, t in chunks:
        if acc is None:
            acc = MomentAccumulator(x.shape[1], y.shape[1], n_classes, n_rows=n_rows,
                                    fold_split=n_rows // 2 if fold_split is None else fold_split,
                                    subsample=subsample_indices(n_rows, size, seed), **kw)
        acc.update(x, y, t)
    if acc is None:
        raise ValueError("no chunks")
    return acc.result({"subsample_seed": int(seed), "subsample_size": int(size),
                       "minibatch_size": int(kw.get("minibatch_size", 0))})


# ------------------------------------------------------------------------- files

def _moments_to_arrays(m: Moments, prefix: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays: dict[str, np.ndarray] = {}
    for i, f in enumerate(m.folds or (m,)):
        p = f"{prefix}fold{i}/"
        arrays[p + "shift_x"], arrays[p + "shift_y"] = f.shift_x, f.shift_y
        for name in _STAT_FIELDS:
            val = getattr(f, name)
            if val is not None:
                arrays[p + name] = np.asarray(val, dtype=np.float64)
        for name in _INT_FIELDS:
            arrays[p + name] = np.asarray(getattr(f, name), dtype=np.int64)
    for name in ("sub_kx", "sub_ky", "sub_idx", "sub_labels"):
        val = getattr(m, name)
        if val is not None:
            arrays[prefix + name] = val
    return arrays, {"meta": m.meta, "n_folds": len(m.folds or (m,))}


def _arrays_to_moments(z: Any, prefix: str, info: dict[str, Any]) -> Moments:
    folds = []
    for i in range(info["n_folds"]):
        p = f"{prefix}fold{i}/"
        kw: dict[str, Any] = {"shift_x": z[p + "shift_x"], "shift_y": z[p + "shift_y"]}
        for name in _STAT_FIELDS:
            key = p + name
            if key in z.files:
                arr = z[key]
                kw[name] = float(arr) if arr.ndim == 0 else arr
        for name in _INT_FIELDS:
            kw[name] = int(z[p + name])
        folds.append(Moments(**kw, meta={**info["meta"], "fold": i}))
    if len(folds) == 1:
        total = folds[0]
        total.meta = dict(info["meta"])
    else:
        total = folds[0] + folds[1]
        total.folds = (folds[0], folds[1])
        total.meta = dict(info["meta"])
    for name in ("sub_kx", "sub_ky", "sub_idx", "sub_labels"):
        if prefix + name in z.files:
            setattr(total, name, z[prefix + name])
    return total


def save_moments(path: str | os.PathLike, obj: Moments | dict[str, Moments]) -> Path:
    """Write moments (one Moments, or ``{view: Moments}``) to an ``.npz``, atomically.

    Objects shared between views (dense layers) are stored once. The header
    (JSON, key ``__header__``) records the format version, views, aliases and
    each view's meta (layer, view, dtypes, counts, subsample seed, fold split).
    """
    path = Path(path)
    views = obj if isinstance(obj, dict) else {obj.meta.get("view", "") or "default": obj}
    arrays: dict[str, np.ndarray] = {}
    header: dict[str, Any] = {"format_version": FORMAT_VERSION, "views": {}, "aliases": {},
                              "single": not isinstance(obj, dict)}
    stored: dict[int, str] = {}
    for v, m in views.items():
        if id(m) in stored:
            header["aliases"][v] = stored[id(m)]
            continue
        stored[id(m)] = v
        a, info = _moments_to_arrays(m, f"{v}/")
        arrays.update(a)
        header["views"][v] = info
    arrays["__header__"] = np.frombuffer(json.dumps(header, default=_json_default).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def load_moments(path: str | os.PathLike) -> dict[str, Moments] | Moments:
    """Read what :func:`save_moments` wrote: ``{view: Moments}`` (or the single Moments)."""
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(bytes(z["__header__"]).decode())
        if header.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: moments format {header.get('format_version')} != {FORMAT_VERSION}")
        out = {v: _arrays_to_moments(z, f"{v}/", info) for v, info in header["views"].items()}
    for alias, target in header["aliases"].items():
        out[alias] = out[target]
    if header.get("single"):
        return next(iter(out.values()))
    return out
