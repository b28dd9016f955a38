"""Dual form: each network's centred n × n Gram, accumulated over feature blocks.

A view wider than ``max_features`` (e.g. ``flatten`` of an early conv layer: 65,536
features for a CIFAR ResNet-18 stem at width 64) cannot hold d × d sums. Everything
that depends on the data only through inner products *between samples* is exact from
the Gram instead:

* linear and debiased CKA (⟨Kc, Lc⟩ / ‖Kc‖‖Lc‖; Song et al.'s unbiased HSIC from the
  zero-diagonal Grams),
* RBF CKA and mutual k-NN on all n rows, from squared distances K_ii + K_jj − 2K_ij,
* Imani et al.'s target alignment, from the eigendecomposition of the Gram of the
  row-normalised [Φ, 1] (see :meth:`GramMoments.phi_gram`),
* minibatch CKA (Nguyen et al.), from the diagonal blocks of consecutive rows,
* the declared subsample's centred Grams (the ``*_subsample`` kernel measures), kept
  exactly as the primal form keeps them.

Conventions
-----------
Rows are samples of the view, columns are features. The Gram is over the *Gram rows*:
all n rows of the view, or, when n > ``max_gram_rows``, a declared seeded row subsample
(:func:`~convergent.moments.base.subsample_indices` with ``subsample_seed``), recorded in
``rows`` and ``meta``. With μ the mean of the Gram rows and x̄_i = x_i − μ:

=====================  =================================================  =========
field                  meaning                                            shape
=====================  =================================================  =========
``gram_x``             K = X̄X̄ᵀ, centred Gram (similarity, not distance)   (n, n)
``xmu``                x̄_i · μ (rebuilds the raw Gram XXᵀ exactly)        (n,)
``mu2_x``              ‖μ‖²                                               -
``var_x_``             population variance of each feature (dead units)   (d1,)
``labels``             class of each Gram row                             (n,)
``sub_kx`` …           as in the primal form: the kernel subsample        (s, s)
=====================  =================================================  =========

Accumulation: the caller feeds, net by net, blocks of *all* Gram rows × a range of
features (:meth:`GramAccumulator.add`). Each block is centred exactly by its own column
means (they are complete: all rows are present), and ``K += B̄B̄ᵀ`` (float32 products
with float64 accumulation for ``precision="mixed"``, else float64). A wide layer is
thus never in memory: only one n × (feature block) slab at a time, plus the two n × n
Grams. Memory is bounded by the n² term: :func:`gram_memory_gib`.

What the Gram cannot give (d × d sums: unit matching, subspace match, sparse prediction,
spectral groups, CCA-type measures; per-fold fits) raises
:class:`~convergent.moments.base.FormUnavailable` naming the view, d and n.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from convergent.moments.base import DUAL, FormUnavailable, MeasureUnavailable, check_memory, subsample_indices

__all__ = ["GramAccumulator", "GramMoments", "gram_block_features", "gram_from_arrays", "gram_memory_gib",
           "unbiased_hsic_gram"]

#: bytes of one float64 feature block (Gram rows × features) fed to the Gram: the pass's
#: only memory term besides the n × n matrices
GRAM_BLOCK_BYTES = 64 * 2**20

#: primal-only names: asking a dual view for them raises FormUnavailable (not AttributeError)
_PRIMAL_ONLY = frozenset({
    "sx", "sy", "sxx", "syy", "sxy", "st", "sxt", "syt", "s_pxpy", "s_x_py", "s_y_px", "s_px2", "s_x_px",
    "s_py2", "s_y_py", "ax", "axt", "ay", "ayt", "shift_x", "shift_y", "mean_x", "mean_y", "sum_x", "sum_y",
    "xx", "yy", "xy", "xt", "yt", "cxx", "cyy", "cxy", "cxt", "cyt", "centred_debias_terms"})


def unbiased_hsic_gram(K: np.ndarray, L: np.ndarray) -> float:
    """Song et al. (2012) unbiased linear HSIC from two Gram matrices (m, m) of the same rows.

    HSIC₁ = [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((m−1)(m−2)) − 2/(m−2)·1ᵀK̃L̃1] / (m(m−3)), K̃ = K with a
    zero diagonal. Translation invariant, so centred or raw Grams give the same value;
    O(m²), no m × m temporaries beyond one elementwise product pass.
    """
    m = K.shape[0]
    if m < 4:
        raise MeasureUnavailable(f"unbiased HSIC needs n >= 4 rows, got {m}")
    dk, dl = np.diag(K).copy(), np.diag(L).copy()
    k1, l1 = K.sum(axis=1) - dk, L.sum(axis=1) - dl          # K̃1, L̃1
    tr = float(np.vdot(K, L)) - float(dk @ dl)               # Σ_ij K̃_ij L̃_ij (symmetric)
    return (tr + float(k1.sum()) * float(l1.sum()) / ((m - 1) * (m - 2)) - 2.0 / (m - 2) * float(k1 @ l1)) / (
        m * (m - 3))


@dataclass
class GramMoments:
    """Dual-form moments of X (n, d1) and Y (n, d2): centred Grams of the Gram rows (module doc)."""

    n: int
    d1: int
    d2: int
    n_classes: int
    gram_x: np.ndarray
    gram_y: np.ndarray
    xmu: np.ndarray
    ymu: np.ndarray
    mu2_x: float
    mu2_y: float
    var_x_: np.ndarray
    var_y_: np.ndarray
    labels: np.ndarray
    rows: np.ndarray
    n_rows: int
    alignment: bool = True
    mb_count: int = 0
    mb_dropped: int = 0
    mb_xy: float = 0.0
    mb_xx: float = 0.0
    mb_yy: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    sub_kx: np.ndarray | None = None
    sub_ky: np.ndarray | None = None
    sub_idx: np.ndarray | None = None
    sub_labels: np.ndarray | None = None

    form: ClassVar[str] = DUAL
    folds: ClassVar[None] = None

    # ---------------------------------------------------------------- what a measure may ask
    @property
    def view(self) -> str:
        return str(self.meta.get("view", ""))

    @property
    def var_x(self) -> np.ndarray:
        """Population variance of each feature of X over the Gram rows, (d1,)."""
        return self.var_x_

    @property
    def var_y(self) -> np.ndarray:
        return self.var_y_

    @property
    def sum_t(self) -> np.ndarray:
        """Class counts of the Gram rows, (c,)."""
        return np.bincount(self.labels, minlength=self.n_classes).astype(np.float64)

    @property
    def subsampled(self) -> bool:
        """True when the Gram holds a declared row subsample, not every row of the view."""
        return self.n < self.n_rows

    def describe(self) -> str:
        """``view 'flatten' is dual (d=…, n=…)``: the words every FormUnavailable message ends with."""
        rows = f"n={self.n}" + (f" of {self.n_rows} rows, seeded subsample" if self.subsampled else "")
        d = max(self.d1, self.d2)
        why = (f"> max_features={self.meta.get('max_features', '?')}" if d > int(self.meta.get("max_features", d))
               else f"> {self.n_rows} rows")
        return f"view {self.view or '(unnamed)'!r} is dual (d={d} {why}, {rows})"

    def total(self) -> "GramMoments":
        return self

    def fold(self, i: int) -> "GramMoments":
        raise FormUnavailable(f"needs per-fold d × d sums (fit on fold 0, evaluate on fold 1); {self.describe()}")

    def __getattr__(self, name: str) -> Any:
        # only reached for attributes the dual form does not have
        if name in _PRIMAL_ONLY:
            raise FormUnavailable(f"needs the d × d feature-space sums ({name}); {self.describe()}")
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def gram(self, side: str) -> np.ndarray:
        """Centred Gram (n, n) of net A (``"a"``, the X side) or B (``"b"``)."""
        return {"a": self.gram_x, "b": self.gram_y}[side]

    def phi_gram(self, side: str) -> np.ndarray:
        """Gram (n, n) of the row-normalised [φ, 1] of one net (Imani et al.'s alignment).

        With the raw Gram G = XXᵀ = K + v1ᵀ + 1vᵀ + ‖μ‖²11ᵀ (v = ``xmu``), the rows [x_i, 1]
        have inner products G_ij + 1 and squared norms r_i² = G_ii + 1, so the
        normalised Gram is (G_ij + 1) / (r_i r_j). Built in place in one new n × n array.
        """
        if not self.alignment:
            raise MeasureUnavailable("alignment terms were not accumulated (moments pass alignment=False)")
        K, v, m2 = (self.gram_x, self.xmu, self.mu2_x) if side == "a" else (self.gram_y, self.ymu, self.mu2_y)
        P = K + v[:, None]
        P += v[None, :]
        P += m2 + 1.0
        inv = 1.0 / np.sqrt(np.diag(P).copy())
        P *= inv[:, None]
        P *= inv[None, :]
        return P

    # ---------------------------------------------------------------- replicates
    @property
    def n_null(self) -> int:
        """Null worlds this view offers: exact reindexings of the Grams (no extra storage)."""
        return int(self.meta.get("null_permutations", 0) or 0)

    @property
    def n_blocks(self) -> int:
        """Example blocks this view offers (rows of the Grams dropped; no extra storage)."""
        return len(self.meta.get("example_block_rows") or ())

    def _fold_of_rows(self) -> np.ndarray:
        split = self.meta.get("fold_split")
        split = self.n_rows // 2 if split is None else int(split)
        return (self.rows >= split).astype(np.int64)

    def null_permutation(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(π, ρ): in null world ``k`` Gram row i of A is row π[i], of B row ρ[i]; each maps a fold
        onto itself. Seeded by (null_seed, n, k), so it is the same for every pair of a sweep."""
        rng = np.random.default_rng([int(self.meta.get("null_seed", 0)), int(self.n), int(k), 2])
        fold = self._fold_of_rows()
        perms = []
        for _side in "ab":
            perm = np.arange(self.n)
            for f in (0, 1):
                idx = np.flatnonzero(fold == f)
                perm[idx] = idx[rng.permutation(idx.size)]
            perms.append(perm)
        return perms[0], perms[1]

    def null_world(self, k: int, subsample: bool = True) -> "GramMoments":
        """Null world ``k``: the Gram rows of A and of B each permuted within their fold (an
        exact reindexing of the n × n Grams), labels in place; the kernel subsample of B permuted
        (with ``subsample``; else the world has none)."""
        if not self.n_null:
            raise ValueError("no null worlds were requested for these moments (null_permutations 0)")
        from convergent.moments.replicates import NO_MINIBATCHES, subsample_permutation

        seed = int(self.meta.get("null_seed", 0))
        pi, rho = self.null_permutation(k)
        out = dataclasses.replace(self, gram_x=self.gram_x[np.ix_(pi, pi)], xmu=self.xmu[pi],
                                  gram_y=self.gram_y[np.ix_(rho, rho)], ymu=self.ymu[rho],
                                  **NO_MINIBATCHES, meta=dict(self.meta),
                                  sub_kx=self.sub_kx if subsample else None, sub_ky=None)
        if self.sub_ky is not None and subsample:
            sp = subsample_permutation(self.sub_ky.shape[0], seed, k)
            out.sub_ky = self.sub_ky[np.ix_(sp, sp)]
        return out

    def jackknife(self, b: int, subsample: bool = True) -> "GramMoments":
        """The Grams without the rows of example block ``b`` (re-centred on the rows kept); with
        ``subsample`` the kernel subsample too (else it is dropped: the kernels are not replicated)."""
        if not self.n_blocks:
            raise ValueError("no example blocks were requested for these moments (example_blocks 0)")
        from convergent.moments.replicates import NO_MINIBATCHES, recentre_gram

        lo, hi = self.meta["example_block_rows"][b]
        keep = np.flatnonzero((self.rows < lo) | (self.rows >= hi))
        m = keep.size
        kw: dict[str, Any] = {}
        for side, (K, v, m2) in (("x", (self.gram_x, self.xmu, self.mu2_x)), ("y", (self.gram_y, self.ymu, self.mu2_y))):
            G = K[np.ix_(keep, keep)] + v[keep][:, None] + v[keep][None, :] + m2   # raw Gram of the rows kept
            g1 = G.sum(axis=1) / m
            mu2 = float(g1.sum() / m)                                            # ‖μ'‖²
            kw[f"gram_{side}"] = G - g1[:, None] - g1[None, :] + mu2
            kw[f"{side}mu"] = g1 - mu2
            kw[f"mu2_{side}"] = mu2
        out = dataclasses.replace(self, n=m, labels=self.labels[keep], rows=self.rows[keep],
                                  n_rows=m if not self.subsampled else self.n_rows,
                                  **NO_MINIBATCHES, meta=dict(self.meta),
                                  sub_kx=None, sub_ky=None, sub_idx=None, sub_labels=None, **kw)
        if self.sub_kx is not None and subsample:
            sk = np.flatnonzero((self.sub_idx < lo) | (self.sub_idx >= hi))
            out.sub_kx, out.sub_ky = recentre_gram(self.sub_kx, sk), recentre_gram(self.sub_ky, sk)
            out.sub_idx, out.sub_labels = self.sub_idx[sk], self.sub_labels[sk]
        return out

    def swapped(self) -> "GramMoments":
        """The same moments with the roles of X and Y exchanged."""
        kw = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for a, b in [("d1", "d2"), ("gram_x", "gram_y"), ("xmu", "ymu"), ("mu2_x", "mu2_y"),
                     ("var_x_", "var_y_"), ("mb_xx", "mb_yy"), ("sub_kx", "sub_ky")]:
            kw[a], kw[b] = kw[b], kw[a]
        return GramMoments(**kw)


def gram_memory_gib(n_gram: int, n_sub: int = 0, precision: str = "mixed", threads: int = 1) -> float:
    """Rough peak memory of one view's dual pass: two float64 n × n Grams, per thread one product
    temporary (float32 for mixed precision) and a feature block (read + centred; at least
    :data:`GRAM_BLOCK_BYTES`, more when a store's feature chunk is wider), and the subsample Grams."""
    temp = 4 if precision == "mixed" else 8
    return (2 * 8 * n_gram ** 2 + threads * (temp * n_gram ** 2 + 2 * GRAM_BLOCK_BYTES)
            + 2 * 8 * n_sub ** 2) / 2**30


def gram_block_features(n_gram: int, d: int, align: int = 1) -> int:
    """Features per block: as many as fit :data:`GRAM_BLOCK_BYTES` in float64 (at least 256,
    so that the products stay efficient), a multiple of ``align`` (the store's feature chunk)."""
    fb = max(256, GRAM_BLOCK_BYTES // (8 * max(n_gram, 1)))
    if align > 1:
        fb = max(align, fb // align * align)
    return int(min(fb, d))


class GramAccumulator:
    """Feed feature blocks of all Gram rows, net by net; get :class:`GramMoments`.

    ``rows``: sorted global indices (into the view's ``n_rows`` rows) of the Gram rows;
    ``sub``: sorted global indices of the kernel subsample (may lie outside ``rows``).
    Each net's state is touched only by its own :meth:`add` calls, so the two nets may
    be fed from two threads; the result does not depend on it.
    """

    def __init__(self, d1: int, d2: int, n_rows: int, rows: np.ndarray, sub: np.ndarray | None = None,
                 precision: str = "float64"):
        if precision not in ("float64", "mixed"):
            raise ValueError(f"precision must be 'float64' or 'mixed', got {precision!r}")
        self.d = {"a": int(d1), "b": int(d2)}
        self.n_rows = int(n_rows)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.sub = np.zeros(0, np.int64) if sub is None else np.asarray(sub, dtype=np.int64)
        self.precision = precision
        self.dtype = np.float32 if precision == "mixed" else np.float64
        n, s = self.rows.size, self.sub.size
        check_memory(gram_memory_gib(n, s, precision, threads=2), f"the dual form's two {n} × {n} Grams",
                     "lower moments.max_gram_rows (a declared row subsample) or use a narrower view")
        self.g = {k: np.zeros((n, n)) for k in "ab"}
        self.v = {k: np.zeros(n) for k in "ab"}
        self.m2 = {k: 0.0 for k in "ab"}
        self.var = {k: np.zeros(self.d[k]) for k in "ab"}
        self.seen = {k: np.zeros(self.d[k], dtype=bool) for k in "ab"}
        self.sub_g = {k: np.zeros((s, s)) for k in "ab"}

    def add(self, side: str, f0: int, block: np.ndarray, sub_block: np.ndarray | None = None) -> None:
        """Add features ``[f0, f0 + fb)`` of net ``side`` (``"a"``/``"b"``): ``block`` is
        (n_gram, fb), the Gram rows in order; ``sub_block`` (s, fb) the subsample rows."""
        n, fb = self.rows.size, block.shape[1]
        if block.shape[0] != n:
            raise ValueError(f"a feature block must hold all {n} Gram rows, got {block.shape[0]}")
        if f0 < 0 or f0 + fb > self.d[side] or self.seen[side][f0:f0 + fb].any():
            raise ValueError(f"features [{f0}, {f0 + fb}) of net {side} outside [0, {self.d[side]}) or fed twice")
        mu = np.mean(block, axis=0, dtype=np.float64)      # exact column means: all rows are here
        if not np.isfinite(mu).all():
            bad = np.argwhere(~np.isfinite(block))[0][0]
            raise ValueError(f"{'X (network A)' if side == 'a' else 'Y (network B)'}: "
                             f"{int((~np.isfinite(block)).sum())} non-finite values (NaN/Inf) in features "
                             f"[{f0}, {f0 + fb}); first at row {int(self.rows[bad])}")
        # centred block in the product dtype (one rounding, as the primal form's shifted rows);
        # per-block sums in that dtype, accumulated over blocks in float64
        p = np.subtract(block, mu.astype(self.dtype), dtype=self.dtype)
        self.var[side][f0:f0 + fb] = np.einsum("ij,ij->j", p, p, dtype=np.float64) / n
        self.v[side] += p @ mu.astype(self.dtype)
        self.m2[side] += float(mu @ mu)
        self.g[side] += p @ p.T                             # numpy dispatches aaᵀ to BLAS syrk
        if self.sub.size:
            sb = np.array(sub_block, dtype=np.float64)
            sb -= sb.mean(axis=0)
            self.sub_g[side] += sb @ sb.T
        self.seen[side][f0:f0 + fb] = True

    def result(self, labels: np.ndarray, n_classes: int, sub_labels: np.ndarray | None = None, *,
               fold_split: int | None = None, minibatch_size: int = 0, minibatch_max: int | None = None,
               alignment: bool = True, meta: dict[str, Any] | None = None) -> GramMoments:
        """The :class:`GramMoments`; checks every feature of both nets was fed.

        ``labels``: classes of the Gram rows (n_gram,); ``fold_split``: first row of fold 1
        among the view's rows (for the minibatches, which stay inside a fold as in the
        primal form)."""
        for k in "ab":
            if not self.seen[k].all():
                missing = int((~self.seen[k]).sum())
                raise ValueError(f"{missing} of {self.d[k]} features of net {k} were never fed")
        n = self.rows.size
        if n == 0:
            raise ValueError("no rows")
        meta = dict(meta or {})
        meta.update(form=DUAL, n_rows=self.n_rows, gram_rows=n, precision=self.precision,
                    fold_split=fold_split)
        m = GramMoments(n=n, d1=self.d["a"], d2=self.d["b"], n_classes=int(n_classes),
                        gram_x=self.g["a"], gram_y=self.g["b"], xmu=self.v["a"], ymu=self.v["b"],
                        mu2_x=self.m2["a"], mu2_y=self.m2["b"], var_x_=self.var["a"], var_y_=self.var["b"],
                        labels=np.asarray(labels, dtype=np.int64), rows=self.rows, n_rows=self.n_rows,
                        alignment=bool(alignment), meta=meta)
        if self.sub.size:
            m.sub_kx, m.sub_ky = self.sub_g["a"], self.sub_g["b"]
            m.sub_idx = self.sub.copy()
            m.sub_labels = np.asarray(sub_labels, dtype=np.int64)
        if minibatch_size:
            _minibatches(m, self.n_rows // 2 if fold_split is None else int(fold_split), int(minibatch_size),
                         minibatch_max)
        return m


def _minibatches(m: GramMoments, fold_split: int, mb: int, mb_max: int | None) -> None:
    """Nguyen et al.'s minibatch HSIC sums from the Gram's diagonal blocks, with exactly the
    primal form's batch selection (consecutive rows within each fold, trailing partial batch
    dropped, at most ``mb_max`` evenly spaced batches per fold, chosen by row index)."""
    if m.subsampled:
        m.meta["minibatch_unavailable"] = (f"minibatches are consecutive rows, but the Gram holds a seeded "
                                           f"subsample of {m.n} of {m.n_rows} rows")
        return
    sums, count, dropped = np.zeros(3), 0, 0
    for first, rows in ((0, fold_split), (fold_split, m.n_rows - fold_split)):
        n_batches = rows // mb
        take = n_batches if not mb_max else min(n_batches, int(mb_max))
        stride = max(1, n_batches // take) if take else 1
        dropped += rows - n_batches * mb
        for k in range(n_batches):
            if not (k % stride == 0 and k // stride < take):
                continue
            s = slice(first + k * mb, first + (k + 1) * mb)
            Kb, Lb = m.gram_x[s, s], m.gram_y[s, s]
            sums += (unbiased_hsic_gram(Kb, Lb), unbiased_hsic_gram(Kb, Kb), unbiased_hsic_gram(Lb, Lb))
            count += 1
    m.mb_count, m.mb_dropped = count, dropped
    m.mb_xy, m.mb_xx, m.mb_yy = (float(v) for v in sums)


def gram_from_arrays(X: np.ndarray, Y: np.ndarray, labels: np.ndarray, n_classes: int, fold_split: int, *,
                     subsample_size: int = 0, subsample_seed: int = 0, minibatch_size: int = 0,
                     minibatch_max: int | None = None, alignment: bool = True, precision: str = "float64",
                     max_gram_rows: int | None = None, max_features: int | None = None,
                     chunk_features: int | None = None, meta: dict[str, Any] | None = None,
                     null_permutations: int = 0, null_seed: int = 0, example_blocks: int = 0) -> GramMoments:
    """Dual-form moments of in-memory X (n, d1), Y (n, d2) (rows = samples), fed in feature
    blocks of ``chunk_features`` columns (default :func:`gram_block_features`): only one
    float64 block of the Gram rows exists at a time besides the inputs."""
    n = X.shape[0]
    rows = (np.arange(n, dtype=np.int64) if not max_gram_rows or n <= max_gram_rows
            else subsample_indices(n, int(max_gram_rows), subsample_seed))
    sub = subsample_indices(n, subsample_size, subsample_seed)
    acc = GramAccumulator(X.shape[1], Y.shape[1], n, rows, sub, precision)
    whole = rows.size == n
    for side, A in (("a", X), ("b", Y)):
        step = int(chunk_features or gram_block_features(rows.size, A.shape[1]))
        for f0 in range(0, A.shape[1], step):
            cols = A[:, f0:f0 + step]
            acc.add(side, f0, cols if whole else cols[rows], cols[sub] if sub.size else None)
    info = {"max_features": max_features, "max_gram_rows": max_gram_rows, "gram_row_seed": int(subsample_seed),
            **replicate_meta(n, fold_split, 1, null_permutations, null_seed, example_blocks), **(meta or {})}
    return acc.result(labels[rows], n_classes, labels[sub] if sub.size else None, fold_split=fold_split,
                      minibatch_size=minibatch_size, minibatch_max=minibatch_max, alignment=alignment,
                      meta=info)


def replicate_meta(n_rows: int, fold_split_rows: int, rows_per_image: int, null_permutations: int, null_seed: int,
                   example_blocks: int) -> dict[str, Any]:
    """The meta keys by which a dual view offers its replicates (computed on demand from the Grams)."""
    from convergent.moments.replicates import image_blocks

    if not (null_permutations or example_blocks):
        return {}
    if example_blocks and example_blocks < 4:
        raise ValueError(f"example_blocks must be 0 or an even number >= 4, got {example_blocks}")
    blocks = image_blocks(n_rows // rows_per_image, fold_split_rows // rows_per_image, int(example_blocks))
    return {"null_permutations": int(null_permutations), "null_seed": int(null_seed),
            "example_blocks": int(example_blocks), "rows_per_image": int(rows_per_image),
            "example_block_rows": [[lo * rows_per_image, hi * rows_per_image] for lo, hi in blocks]}
