"""Primal form: joint sufficient statistics (d × d sums) of two layers, accumulated in one streaming pass.

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
spread of the data (not to its offset). :meth:`Moments.from_arrays` (and
:func:`~convergent.moments.arrays.moments_from_arrays`) default to float64.

Views too wide for d × d matrices (more than ``max_features`` features, e.g. ``flatten`` of
early conv layers) take the dual form instead, :mod:`convergent.moments.dual`: each network's
n × n Gram, accumulated over feature blocks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from convergent.moments.base import (DEFAULT_MOMENT_PARAMS, PRIMAL, FormUnavailable, check_memory, paired_inputs,
                                     raise_nonfinite, subsample_indices)

__all__ = ["DEFAULT_MOMENT_PARAMS", "MomentAccumulator", "Moments", "accumulate", "moments_memory_gib",
           "subsample_indices"]

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
    # replicates (only on totals, see convergent.moments.replicates): the sums of each example
    # block (fold-like Moments, in image order) and the cross terms of each null world,
    # {field: (P, 2 folds, ...)}
    blocks: tuple["Moments", ...] | None = None
    null: dict[str, np.ndarray] | None = None

    #: which form these moments are (see :mod:`convergent.moments.dual` for the other one)
    form: ClassVar[str] = PRIMAL

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

    def gram(self, side: str) -> np.ndarray:
        """The dual form's n × n Gram of all rows: not in the primal sums (only the subsample's)."""
        raise FormUnavailable(f"needs the n × n Gram of all rows; view {self.view or '(unnamed)'!r} is primal "
                              f"(d={max(self.d1, self.d2)} <= max_features, n={self.n}): only the subsample's "
                              "Gram is kept (the *_subsample measures)")

    # ---------------------------------------------------------------- folds
    def total(self) -> "Moments":
        """The moments of all rows (a top-level Moments already is the total)."""
        return self

    def fold(self, i: int) -> "Moments":
        """Moments of fold ``i`` (0: first half of the images in order, 1: the rest)."""
        if self.folds is None:
            raise ValueError("these moments carry no folds (they are a fold themselves)")
        return self.folds[i]

    # ---------------------------------------------------------------- replicates
    @property
    def n_null(self) -> int:
        """Null worlds stored (0: none)."""
        return 0 if self.null is None else int(self.null["sxy"].shape[0])

    @property
    def n_blocks(self) -> int:
        """Example blocks stored (0: none)."""
        return 0 if self.blocks is None else len(self.blocks)

    def null_world(self, k: int, subsample: bool = True) -> "Moments":
        """The moments of null world ``k``: each network's images permuted within each fold, so
        rows of A, rows of B and the labels no longer correspond (:mod:`~convergent.moments.replicates`).
        Single-network sums are the real ones; the cross terms are world ``k``'s. Minibatch HSIC
        and its count are not replicated (0); the kernel subsample of B is permuted (with
        ``subsample``; else the world has none: the kernels are not replicated)."""
        if not self.n_null or self.folds is None:
            raise ValueError("these moments carry no null worlds")
        from convergent.moments.replicates import NO_MINIBATCHES, subsample_permutation

        folds = []
        for i, f in enumerate(self.folds):
            kw: dict[str, Any] = {name: (float(arr[k, i]) if arr.ndim == 2 else arr[k, i])
                                  for name, arr in self.null.items()}
            folds.append(dataclasses.replace(f, **NO_MINIBATCHES, **kw))
        out = self._from_folds(folds)
        if self.sub_ky is not None and subsample:
            perm = subsample_permutation(self.sub_ky.shape[0], int(self.meta.get("null_seed", 0)), k)
            out.sub_kx, out.sub_ky = self.sub_kx, self.sub_ky[np.ix_(perm, perm)]
            out.sub_idx, out.sub_labels = self.sub_idx, self.sub_labels
        return out

    def jackknife(self, b: int, subsample: bool = True) -> "Moments":
        """The moments of every example block but ``b`` (a delete-one-block jackknife replicate):
        the fold holding ``b`` is the sum of its other blocks, the other fold is unchanged, and (with
        ``subsample``) the kernel subsample loses its rows in block ``b`` (its Grams re-centred; else
        it is dropped: the kernels are not replicated)."""
        if not self.n_blocks or self.folds is None:
            raise ValueError("these moments carry no example blocks")
        from convergent.moments.replicates import NO_MINIBATCHES, recentre_gram

        i = int(self.blocks[b].meta["fold"])
        rest = [blk for j, blk in enumerate(self.blocks) if j != b and int(blk.meta["fold"]) == i]
        fold = rest[0]
        for blk in rest[1:]:
            fold = fold + blk
        fold.meta = dict(self.folds[i].meta)
        folds = list(self.folds)
        folds[i] = fold
        out = self._from_folds([dataclasses.replace(f, **NO_MINIBATCHES) for f in folds])
        if self.sub_kx is not None and subsample:
            lo, hi = self.meta["example_block_rows"][b]
            keep = np.flatnonzero((self.sub_idx < lo) | (self.sub_idx >= hi))
            out.sub_kx, out.sub_ky = recentre_gram(self.sub_kx, keep), recentre_gram(self.sub_ky, keep)
            out.sub_idx, out.sub_labels = self.sub_idx[keep], self.sub_labels[keep]
        return out

    def _from_folds(self, folds: list["Moments"]) -> "Moments":
        total = folds[0] + folds[1]
        total.folds = (folds[0], folds[1])
        total.meta = dict(self.meta)
        return total

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
        kw["blocks"] = None if self.blocks is None else tuple(f.swapped() for f in self.blocks)
        if self.null is not None:
            null = dict(self.null)
            for a, b in (("s_x_py", "s_y_px"), ("sxt", "syt"), ("axt", "ayt")):
                if a in null and b in null:
                    null[a], null[b] = self.null[b], self.null[a]
            null["sxy"] = np.swapaxes(self.null["sxy"], -1, -2)
            kw["null"] = null
        return Moments(**kw)

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_arrays(cls, X: np.ndarray, Y: np.ndarray, labels: np.ndarray | None = None,
                    n_classes: int | None = None, fold_split: int | None = None, *,
                    subsample_size: int = 0, subsample_seed: int = 0, minibatch_size: int = 0,
                    minibatch_max: int | None = None, alignment: bool = True, precision: str = "float64",
                    chunk_rows: int | None = None, meta: dict[str, Any] | None = None,
                    null_permutations: int = 0, null_seed: int = 0, example_blocks: int = 0,
                    replicate_max_gib: float | None = None) -> "Moments":
        """The primal form (d × d sums) of in-memory X (n, d1), Y (n, d2); rows are samples.

        ``labels``: int classes (n,) or None (then a single class 0). ``fold_split``:
        first row of fold 1 (default n // 2). ``chunk_rows`` feeds the rows in
        blocks (for testing that blocking does not change anything). Which form a pair
        of arrays should take is not this class's choice:
        :func:`convergent.moments.arrays.moments_from_arrays` makes it.

        ``null_permutations``, ``null_seed``, ``example_blocks``, ``replicate_max_gib``: the
        replicates (:mod:`convergent.moments.replicates`; off by default here, on in the pipeline).
        """
        X, Y, labels, n_classes = paired_inputs(X, Y, labels, n_classes)
        n = X.shape[0]
        info = {"subsample_seed": int(subsample_seed), "subsample_size": int(subsample_size),
                "minibatch_size": int(minibatch_size), "minibatch_max": minibatch_max}
        check_memory(moments_memory_gib(X.shape[1], Y.shape[1], n_classes, alignment),
                     f"the primal form's d × d sums (d = {X.shape[1]}, {Y.shape[1]})",
                     "use moments_from_arrays with form='auto' or 'dual' (n × n Grams)")
        acc = MomentAccumulator(X.shape[1], Y.shape[1], n_classes, n_rows=n,
                                fold_split=n // 2 if fold_split is None else int(fold_split),
                                subsample=subsample_indices(n, subsample_size, subsample_seed),
                                minibatch_size=minibatch_size, alignment=alignment, precision=precision,
                                minibatch_max=minibatch_max, null_permutations=null_permutations,
                                null_seed=null_seed, example_blocks=example_blocks,
                                replicate_max_gib=replicate_max_gib)
        step = chunk_rows or max(n, 1)
        for s in range(0, n, step):
            acc.update(X[s:s + step], Y[s:s + step], labels[s:s + step])
        return acc.result({**info, **(meta or {})})


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
                raise_nonfinite(x, y, row0)
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
                 precision: str = "float64", minibatch_max: int | None = None, *, rows_per_image: int = 1,
                 null_permutations: int = 0, null_seed: int = 0, example_blocks: int = 0,
                 replicate_max_gib: float | None = None):
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
        self._replicates_setup(int(rows_per_image), int(null_permutations), int(null_seed), int(example_blocks),
                               replicate_max_gib)
        self.offset = 0                         # next row of sequential feeding
        self.shift_x: np.ndarray | None = None
        self.shift_y: np.ndarray | None = None
        self._shift_dt: tuple[np.ndarray, np.ndarray] | None = None

    def set_shift(self, x: np.ndarray, y: np.ndarray) -> None:
        """Fix the shift (c_x, c_y) as the column means of a block (the first one, by convention)."""
        sx, sy = x.mean(axis=0, dtype=np.float64), y.mean(axis=0, dtype=np.float64)
        if not (np.isfinite(sx).all() and np.isfinite(sy).all()):
            raise_nonfinite(x, y, 0)
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
        for i_fold, fold in enumerate(self.folds):   # split at the fold boundary, then into product blocks
            lo, hi = max(row0, fold.first), min(row0 + b, fold.first + fold.rows)
            for s in range(lo, hi, fold.block_rows):
                e = min(s + fold.block_rows, hi)
                fold.update(x[s - row0:e - row0], y[s - row0:e - row0], t[s - row0:e - row0], s, self._shift_dt)
            if self.kept is not None and hi > lo:
                self.kept[i_fold].add(x[lo - row0:hi - row0], y[lo - row0:hi - row0],
                                                      t[lo - row0:hi - row0])
        self.offset = row0 + b

    def _replicates_setup(self, rows_per_image: int, null_permutations: int, null_seed: int, example_blocks: int,
                          max_gib: float | None) -> None:
        """Decide whether this view keeps its rows for null worlds and example blocks
        (:mod:`convergent.moments.replicates`); the reason when it cannot is kept for the meta."""
        from convergent.moments.replicates import (DEFAULT_REPLICATE_PARAMS, image_blocks, replicate_memory_gib)

        self.rows_per_image = rows_per_image
        self.null_permutations, self.null_seed = max(null_permutations, 0), null_seed
        self.example_blocks = example_blocks
        self.replicates_note = ""
        self.kept: list | None = None
        if not (self.null_permutations or example_blocks):
            return
        if self.n_rows % rows_per_image or self.fold_split % rows_per_image:
            raise ValueError(f"{self.n_rows} rows (fold split {self.fold_split}) are not whole images of "
                             f"{rows_per_image} rows")
        n_img, split_img = self.n_rows // rows_per_image, self.fold_split // rows_per_image
        if example_blocks:
            if example_blocks < 4:
                raise ValueError(f"example_blocks must be 0 or an even number >= 4 (a jackknife replicate "
                                 f"keeps at least one block of the fold it cuts), got {example_blocks}")
            self.block_images = image_blocks(n_img, split_img, example_blocks)
        limit = DEFAULT_REPLICATE_PARAMS["replicate_max_gib"] if max_gib is None else float(max_gib)
        need = replicate_memory_gib(self.n_rows, self.d1, self.d2)
        if need > limit:
            self.replicates_note = (f"unavailable: the null worlds and example blocks keep the view's rows in "
                                    f"memory, ~{need:.2f} GiB > moments.replicate_max_gib={limit:g}")
            return
        from convergent.moments.replicates import FoldRows

        self.kept = [FoldRows(f.first) for f in self.folds]

    def _replicates(self, folds: tuple[Moments, Moments], meta: dict[str, Any]
                    ) -> tuple[tuple[Moments, ...] | None, dict[str, np.ndarray] | None]:
        """(example blocks, null cross terms) from the rows kept by each fold."""
        from convergent.moments.replicates import expand_rows, image_permutations, null_cross_terms

        rpi = self.rows_per_image
        n_img, split_img = self.n_rows // rpi, self.fold_split // rpi
        arrays = [k.arrays() for k in self.kept]
        blocks: list[Moments] | None = None
        if self.example_blocks:
            blocks = []
            for j, (lo, hi) in enumerate(self.block_images):
                i = 0 if lo < split_img else 1
                x, y, t = arrays[i]
                r0, r1 = lo * rpi - self.folds[i].first, hi * rpi - self.folds[i].first
                acc = _FoldAccumulator(self.L, self.dtype, lo * rpi, r1 - r0, self.alignment, 0, None,
                                       np.zeros(0, np.int64))
                for s in range(r0, r1, acc.block_rows):
                    e = min(s + acc.block_rows, r1)
                    acc.update(x[s:e], y[s:e], t[s:e].astype(np.intp), self.folds[i].first + s, self._shift_dt)
                blocks.append(acc.result(self.shift_x, self.shift_y, {**meta, "fold": i, "block": j}))
        null: dict[str, np.ndarray] | None = None
        if self.null_permutations:
            perms = image_permutations(n_img, split_img, self.null_permutations, self.null_seed)
            per_fold = []
            for i, (lo, hi) in enumerate(((0, split_img), (split_img, n_img))):
                x, y, t = arrays[i]
                local = [(expand_rows(pi[lo:hi] - lo, rpi), expand_rows(rho[lo:hi] - lo, rpi)) for pi, rho in perms]
                per_fold.append(null_cross_terms(x, y, t.astype(np.intp), self.shift_x, self.shift_y, self.c, local,
                                                 self.alignment))
            null = {f: np.stack([per_fold[0][f], per_fold[1][f]], axis=1) for f in per_fold[0]}
        return (None if blocks is None else tuple(blocks)), null

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
        if self.null_permutations or self.example_blocks:
            meta.update(null_permutations=self.null_permutations, null_seed=self.null_seed,
                        example_blocks=self.example_blocks, rows_per_image=self.rows_per_image)
            if self.example_blocks:
                meta["example_block_rows"] = [[lo * self.rows_per_image, hi * self.rows_per_image]
                                              for lo, hi in self.block_images]
            if self.kept is None:
                meta["replicates_note"] = self.replicates_note
            else:
                total.blocks, total.null = self._replicates(folds, meta)
                self.kept = None                # the rows are no longer needed
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

