"""Moments of in-memory arrays in either form: the one place that chooses the form.

:func:`moments_from_arrays` applies the streaming pass's rule (:func:`~convergent.moments.base.
choose_form`: the dual n × n Gram form when a width exceeds ``max_features``) to arrays held in
memory, then builds the primal d × d sums (:meth:`convergent.moments.primal.Moments.from_arrays`)
or the dual Grams (:func:`convergent.moments.dual.gram_from_arrays`). Neither form decides for
the other.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convergent.moments.base import DEFAULT_MOMENT_PARAMS, DUAL, PRIMAL, choose_form, paired_inputs
from convergent.moments.dual import GramMoments, gram_from_arrays
from convergent.moments.primal import Moments

__all__ = ["moments_from_arrays"]


def moments_from_arrays(X: np.ndarray, Y: np.ndarray, labels: np.ndarray | None = None,
                        n_classes: int | None = None, fold_split: int | None = None, *,
                        form: str = "auto", max_features: int = DEFAULT_MOMENT_PARAMS["max_features"],
                        max_gram_rows: int | None = DEFAULT_MOMENT_PARAMS["max_gram_rows"],
                        chunk_features: int | None = None, subsample_size: int = 0, subsample_seed: int = 0,
                        minibatch_size: int = 0, minibatch_max: int | None = None, alignment: bool = True,
                        precision: str = "float64", chunk_rows: int | None = None,
                        meta: dict[str, Any] | None = None, null_permutations: int = 0, null_seed: int = 0,
                        example_blocks: int = 0, replicate_max_gib: float | None = None) -> Moments | GramMoments:
    """Moments of in-memory X (n, d1), Y (n, d2); rows are samples.

    ``labels``: int classes (n,) or None (then a single class 0). ``fold_split``: first row of
    fold 1 (default n // 2). ``form``: ``"auto"`` (default) picks the form the streaming pass
    would pick, ``"primal"`` or ``"dual"`` forces one. The primal form takes ``chunk_rows`` (rows
    fed per block, for testing that blocking changes nothing) and ``replicate_max_gib``; the dual
    form is fed in blocks of ``chunk_features`` columns (default: its own block size) and, above
    ``max_gram_rows`` rows, keeps a declared row subsample. ``null_permutations``, ``null_seed``,
    ``example_blocks``: the replicates (:mod:`convergent.moments.replicates`; off by default here,
    on in the pipeline).
    """
    X, Y, labels, n_classes = paired_inputs(X, Y, labels, n_classes)
    n = X.shape[0]
    if form not in ("auto", PRIMAL, DUAL):
        raise ValueError(f"form must be 'auto', 'primal' or 'dual', got {form!r}")
    if form == "auto":
        form = choose_form(X.shape[1], Y.shape[1], max_features)
    fold_split = n // 2 if fold_split is None else int(fold_split)
    common = dict(subsample_size=subsample_size, subsample_seed=subsample_seed, minibatch_size=minibatch_size,
                  minibatch_max=minibatch_max, alignment=alignment, precision=precision,
                  null_permutations=null_permutations, null_seed=null_seed, example_blocks=example_blocks)
    if form == DUAL:
        info = {"subsample_seed": int(subsample_seed), "subsample_size": int(subsample_size),
                "minibatch_size": int(minibatch_size), "minibatch_max": minibatch_max}
        return gram_from_arrays(X, Y, labels, n_classes, fold_split, max_gram_rows=max_gram_rows,
                                max_features=max_features, chunk_features=chunk_features,
                                meta={**info, **(meta or {})}, **common)
    return Moments.from_arrays(X, Y, labels, n_classes, fold_split, chunk_rows=chunk_rows, meta=meta,
                               replicate_max_gib=replicate_max_gib, **common)
