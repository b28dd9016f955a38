"""Replicates of a pair's moments: null worlds (chance level) and example-block jackknives (SE).

Two questions every similarity needs answered besides its value:

* **What would chance give?** A *null world* is the same two representations with the
  correspondence of images broken: the images of network A and of network B are each
  permuted (independently, within each fold, so a fitted measure still fits on fold 0 and
  evaluates on fold 1), the labels stay. Everything that involves a single network (its
  scatter XᵀX, column sums, Σ‖x̃‖⁴, …) is invariant; only the terms that pair a row of one
  network with a row of the other, or with a label, change (:data:`NULL_FIELDS`). A null
  world is stored as those cross terms per fold, so any primal measure can be computed on
  it by the measure's own code (:meth:`~convergent.moments.primal.Moments.null_world`).
* **How much does the value depend on which test images were drawn?** The images of each
  fold are cut into ``example_blocks // 2`` contiguous *blocks* (by image, so a conv
  layer's positions stay together); the sums of each block are kept, and a jackknife
  replicate is the moments of every block but one
  (:meth:`~convergent.moments.primal.Moments.jackknife`). Block ``b`` is defined by image
  index alone, so it is the same images in every pair of a sweep: the replicates of
  different pairs line up, which the findings' Multi-Bootstrap over examples needs.

Both need the rows of the fold in memory once, at the end of the pass (the pass itself
streams): :class:`FoldRows` keeps them, up to ``replicate_max_gib``; above that the view's
replicates are skipped and the reason is kept in the moments' meta, which the measures
report as the null method / SE note (never a silent gap).

Conventions: rows are samples; ``rows_per_image`` rows of a view belong to one image
(1 for dense layers, h·w for a conv layer's ``positions`` view); permutations act on images.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from convergent.moments.base import DEFAULT_MOMENT_PARAMS

#: primal fields that pair a row of A with a row of B or with a label: what a null world changes
NULL_FIELDS = ("sxy", "s_pxpy", "s_x_py", "s_y_px", "sxt", "syt", "axt", "ayt")

#: defaults of the replicates: the moments pass's (``config["moments"]`` keys of the same names)
DEFAULT_REPLICATE_PARAMS = {k: DEFAULT_MOMENT_PARAMS[k]
                            for k in ("null_permutations", "null_seed", "example_blocks", "replicate_max_gib")}


#: a replicate carries no minibatch HSIC: its minibatches would not be the streamed ones
NO_MINIBATCHES = {"mb_count": 0, "mb_xy": 0.0, "mb_xx": 0.0, "mb_yy": 0.0}


def image_blocks(n_images: int, fold_split: int, blocks: int) -> list[tuple[int, int]]:
    """``blocks`` contiguous image ranges ``[lo, hi)``, ``blocks // 2`` per fold, as equal as can be.

    Fold 0 is images ``[0, fold_split)``, fold 1 the rest. ``blocks`` must be even and each
    fold must have at least ``blocks // 2`` images.
    """
    if blocks % 2 or blocks < 0:
        raise ValueError(f"example_blocks must be an even number >= 0 (half per fold), got {blocks}")
    out: list[tuple[int, int]] = []
    per = blocks // 2
    for lo, hi in ((0, fold_split), (fold_split, n_images)):
        if per and hi - lo < per:
            raise ValueError(f"a fold of {hi - lo} images cannot be cut into {per} example blocks")
        cuts = lo + (np.arange(per + 1) * (hi - lo)) // max(per, 1)
        out += [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])] if per else []
    return out


def image_permutations(n_images: int, fold_split: int, count: int, seed: int
                       ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` pairs (π, ρ) of image permutations that map each fold onto itself: in null world
    k, image i of network A is image π[i] and of network B image ρ[i]. Seeded and fixed by
    (n_images, fold_split, count, seed), so every pair of a sweep sees the same null worlds."""
    rng = np.random.default_rng([int(seed), int(n_images), int(fold_split)])
    out = []
    for _ in range(int(count)):
        pair = []
        for _side in "ab":
            perm = np.empty(n_images, dtype=np.int64)
            for lo, hi in ((0, fold_split), (fold_split, n_images)):
                perm[lo:hi] = lo + rng.permutation(hi - lo)
            pair.append(perm)
        out.append((pair[0], pair[1]))
    return out


def subsample_permutation(size: int, seed: int, k: int) -> np.ndarray:
    """The permutation of the kernel subsample's rows of network B in null world ``k``."""
    return np.random.default_rng([int(seed), int(size), int(k), 1]).permutation(size)


def expand_rows(images: np.ndarray, rows_per_image: int) -> np.ndarray:
    """Row indices of ``images`` (image-major, positions in order) when each image has
    ``rows_per_image`` consecutive rows."""
    images = np.asarray(images, dtype=np.int64)
    if rows_per_image == 1:
        return images
    return (images[:, None] * rows_per_image + np.arange(rows_per_image)).ravel()


@dataclass
class FoldRows:
    """The raw rows one fold received, kept for its replicates (X (r, d1), Y (r, d2), labels (r,))."""

    first: int
    xs: list[np.ndarray] = field(default_factory=list)
    ys: list[np.ndarray] = field(default_factory=list)
    ts: list[np.ndarray] = field(default_factory=list)

    def add(self, x: np.ndarray, y: np.ndarray, t: np.ndarray) -> None:
        # copies: the caller's blocks are views of buffers it reuses
        self.xs.append(np.array(x, copy=True))
        self.ys.append(np.array(y, copy=True))
        self.ts.append(np.array(t, copy=True))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cat = (lambda parts: np.concatenate(parts) if len(parts) > 1 else parts[0])
        return cat(self.xs), cat(self.ys), cat(self.ts)


def replicate_memory_gib(n_rows: int, d1: int, d2: int, itemsize: int = 4) -> float:
    """Memory of the rows kept for the replicates: both nets' rows at their stored precision,
    plus one float64 copy of a fold's shifted rows while a null world is formed."""
    return (n_rows * (d1 + d2) * itemsize + n_rows * (d1 + d2) * 8 / 2) / 2**30


def null_cross_terms(x: np.ndarray, y: np.ndarray, t: np.ndarray, shift_x: np.ndarray, shift_y: np.ndarray,
                     n_classes: int, perms: list[tuple[np.ndarray, np.ndarray]], alignment: bool
                     ) -> dict[str, np.ndarray]:
    """The :data:`NULL_FIELDS` of one fold in every null world, stacked: ``{field: (P, ...)}``.

    ``x`` (r, d1), ``y`` (r, d2) are the fold's raw rows, ``t`` its labels; ``perms`` are fold-local
    row permutations (π, ρ): world k pairs row π[i] of A and row ρ[i] of B with label t[i].
    Sums are float64 over the shifted rows x̃ = x − shift_x, like the real moments.
    """
    xs = np.asarray(x, dtype=np.float64) - shift_x
    ys = np.asarray(y, dtype=np.float64) - shift_y
    p, q = np.einsum("ij,ij->i", xs, xs), np.einsum("ij,ij->i", ys, ys)
    T = np.zeros((t.size, n_classes))
    T[np.arange(t.size), t] = 1.0
    if alignment:
        phi_x = _phi(np.asarray(x, dtype=np.float64))
        phi_y = _phi(np.asarray(y, dtype=np.float64))
    out: dict[str, list] = {f: [] for f in NULL_FIELDS}
    for pi, rho in perms:
        xp, yp, pp, qp = xs[pi], ys[rho], p[pi], q[rho]
        out["sxy"].append(xp.T @ yp)
        out["s_pxpy"].append(float(pp @ qp))
        out["s_x_py"].append(xp.T @ qp)
        out["s_y_px"].append(yp.T @ pp)
        out["sxt"].append(xp.T @ T)
        out["syt"].append(yp.T @ T)
        if alignment:
            out["axt"].append(phi_x[pi].T @ T)
            out["ayt"].append(phi_y[rho].T @ T)
    return {f: np.asarray(v, dtype=np.float64) for f, v in out.items() if v}


def _phi(a: np.ndarray) -> np.ndarray:
    """Rows [a, 1] scaled to unit length (Imani et al.'s alignment features), (r, d + 1)."""
    inv = 1.0 / np.sqrt(np.einsum("ij,ij->i", a, a) + 1.0)
    return np.hstack([a * inv[:, None], inv[:, None]])


def recentre_gram(K: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The centred Gram of the rows ``keep`` from a centred (or raw) Gram K: J K[keep, keep] J.

    Double centring removes any common offset, so the rows kept are centred by their own mean."""
    sub = K[np.ix_(keep, keep)]
    return sub - sub.mean(axis=0, keepdims=True) - sub.mean(axis=1, keepdims=True) + sub.mean()
