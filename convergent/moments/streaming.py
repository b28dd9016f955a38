"""The streaming moments pass over two activation stores: each view of a layer in its form.

Per view the form is chosen by :func:`~convergent.moments.base.choose_form`: the primal
d × d sums (:mod:`convergent.moments.primal`; one pass over row chunks, every primal view
at once) or, for a view wider than ``max_features``, the dual n × n Gram
(:mod:`convergent.moments.dual`; one pass over feature blocks of each network, reading
the stores' 2-D chunks). The form and its memory are logged per view.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any

import numpy as np

from convergent.activations import ActivationStore, apply_view, repeat_targets, view_shape
from convergent.logs import get_logger, progress
from convergent.moments.base import DEFAULT_MOMENT_PARAMS, DUAL, choose_form, subsample_indices
from convergent.moments.dual import (GramAccumulator, GramMoments, gram_block_features, gram_memory_gib,
                                     replicate_meta)
from convergent.moments.primal import MomentAccumulator, Moments, moments_memory_gib
from convergent.moments.replicates import DEFAULT_REPLICATE_PARAMS


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
                      max_gram_rows: int | None = DEFAULT_MOMENT_PARAMS["max_gram_rows"],
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
                      threads: int = DEFAULT_MOMENT_PARAMS["threads"],
                      null_permutations: int = DEFAULT_REPLICATE_PARAMS["null_permutations"],
                      null_seed: int = DEFAULT_REPLICATE_PARAMS["null_seed"],
                      example_blocks: int = DEFAULT_REPLICATE_PARAMS["example_blocks"],
                      replicate_max_gib: float = DEFAULT_REPLICATE_PARAMS["replicate_max_gib"],
                      ) -> dict[str, Moments | GramMoments]:
    """One pass over ``layer`` of both stores, in lockstep, computing every view.

    Returns ``{view: Moments}`` (primal views: totals with folds) or, for a view wider
    than ``max_features``, :class:`~convergent.moments.dual.GramMoments` (the dual form:
    n × n Grams over at most ``max_gram_rows`` rows, a declared seeded row subsample
    above that). For a dense layer all views are the same data: it is accumulated once,
    every requested view maps to the same object and its ``meta['view']`` is ``"dense"``.
    ``fold_split`` is in *images* (default n_images // 2). The form and memory of each
    view are logged.

    Raises ``ValueError`` for different numbers of images, different targets, different
    view shapes, or non-finite activations.

    ``threads`` (default 2): with 2, fold 0 and fold 1 are each read, built and
    multiplied by their own thread (the boundary chunk is read by both); with 1, one
    thread accumulates while a prefetch thread (``prefetch``) decodes the next chunk.
    The result is the same. ``blas_threads`` (default 1) caps BLAS threads *per
    thread*: multi-threaded OpenBLAS on these block sizes degrades by up to 20× when
    cores are oversubscribed (measured on the 2-core dev machine); ``None`` leaves the
    setting alone. bench/bench_moments.py compares the settings.

    ``null_permutations``, ``null_seed``, ``example_blocks``, ``replicate_max_gib``: the null
    worlds and example blocks of every view (:mod:`convergent.moments.replicates`).
    """
    rep = {"null_permutations": int(null_permutations), "null_seed": int(null_seed),
           "example_blocks": int(example_blocks), "replicate_max_gib": float(replicate_max_gib)}
    if threads not in (1, 2):
        raise ValueError(f"threads must be 1 or 2 (one per fold), got {threads!r}")
    if blas_threads is None:
        return _streaming_moments(store_a, store_b, layer, views, layer_b, max_features, max_gram_rows,
                                  subsample_size,
                                  subsample_seed, minibatch_size, minibatch_max, minibatch_views, alignment,
                                  alignment_views, precision, images_per_chunk, fold_split, prefetch, threads, rep)
    from threadpoolctl import threadpool_limits   # installed with scikit-learn

    with threadpool_limits(limits=int(blas_threads), user_api="blas"):
        return _streaming_moments(store_a, store_b, layer, views, layer_b, max_features, max_gram_rows,
                                  subsample_size,
                                  subsample_seed, minibatch_size, minibatch_max, minibatch_views, alignment,
                                  alignment_views, precision, images_per_chunk, fold_split, prefetch, threads, rep)


def _streaming_moments(store_a: ActivationStore, store_b: ActivationStore, layer: str,
                       views: Sequence[str] | None, layer_b: str | None, max_features: int,
                       max_gram_rows: int | None, subsample_size: int,
                       subsample_seed: int, minibatch_size: int, minibatch_max: int | None,
                       minibatch_views: Sequence[str], alignment: bool, alignment_views: Sequence[str],
                       precision: str, images_per_chunk: int | None, fold_split: int | None, prefetch: bool,
                       threads: int, rep: dict[str, Any]
                       ) -> dict[str, Moments | GramMoments]:
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
    duals: list[tuple[str, int, int, int]] = []          # (view, rows, d1, d2) of the dual views
    log = get_logger()
    for v in compute:
        rows_a, da = view_shape(arr_a.shape, v)
        rows_b, db = view_shape(arr_b.shape, v)
        if rows_a != rows_b:
            raise ValueError(f"view {v!r}: {layer} has {rows_a} rows in A but {rows_b} in B "
                             f"(raw shapes {arr_a.shape}, {arr_b.shape})")
        if choose_form(da, db, max_features, rows=None if dense else rows_a) == DUAL:
            duals.append((v, rows_a, da, db))
            n_gram = rows_a if not max_gram_rows else min(rows_a, int(max_gram_rows))
            log.info("%s view %r: dual form (d=%d > max_features=%d or > %d rows): n × n Grams of %d%s rows, "
                     "~%.2f GiB", layer, v, max(da, db), max_features, rows_a, n_gram,
                     "" if n_gram == rows_a else f" of {rows_a} (seeded subsample, max_gram_rows)",
                     gram_memory_gib(n_gram, min(subsample_size, rows_a), precision, threads))
            continue
        per_image = rows_a // n
        acc = MomentAccumulator(da, db, n_classes, n_rows=rows_a, fold_split=split_img * per_image,
                                subsample=subsample_indices(rows_a, subsample_size, subsample_seed),
                                minibatch_size=minibatch_size if (dense or v in minibatch_views) else 0,
                                alignment=alignment and (dense or v in alignment_views), precision=precision,
                                minibatch_max=minibatch_max, rows_per_image=per_image, **rep)
        accs[v] = acc
        log.info("%s view %r: primal form (d=%d <= max_features=%d): d × d sums, ~%.2f GiB", layer, v,
                 max(da, db), max_features, moments_memory_gib(da, db, n_classes, acc.alignment))

    def meta(v: str) -> dict[str, Any]:
        return {"layer": layer, "layer_b": layer_b, "view": "dense" if dense else v,
                "kind": "dense" if dense else "conv", "raw_shape_a": list(arr_a.shape),
                "raw_shape_b": list(arr_b.shape), "dtype_a": str(arr_a.dtype),
                "dtype_b": str(arr_b.dtype), "n_images": n, "fold_split_images": split_img,
                "subsample_seed": int(subsample_seed), "subsample_size": int(subsample_size),
                "minibatch_size": int(minibatch_size) if (dense or v in minibatch_views) else 0,
                "minibatch_max": minibatch_max, "max_features": int(max_features),
                "store_a": str(store_a.path), "store_b": str(store_b.path)}

    out: dict[str, Moments | GramMoments] = {}
    if accs:
        out.update(_primal_pass(accs, arr_a, arr_b, labels, layer, n, split_img, images_per_chunk, prefetch,
                                threads, meta))
    for v, rows_v, da, db in duals:
        out[v] = _dual_pass(arr_a, arr_b, v, labels, layer, n, rows_v, da, db, n_classes, split_img,
                            max_gram_rows, subsample_size, subsample_seed,
                            minibatch_size if (dense or v in minibatch_views) else 0, minibatch_max,
                            alignment and (dense or v in alignment_views), precision, images_per_chunk, threads,
                            {**meta(v), "max_gram_rows": max_gram_rows,
                             **replicate_meta(rows_v, split_img * (rows_v // n), rows_v // n, rep["null_permutations"],
                                              rep["null_seed"], rep["example_blocks"])})
    out = {v: out[v] for v in compute}                   # the requested order
    if dense:
        for v in views[1:]:
            out[v] = out[views[0]]
    return out


def _primal_pass(accs: dict[str, MomentAccumulator], arr_a: Any, arr_b: Any, labels: np.ndarray, layer: str,
                 n: int, split_img: int, images_per_chunk: int | None, prefetch: bool, threads: int,
                 meta: Any) -> dict[str, Moments]:
    """The primal views' one pass over row chunks of both stores (every view at once)."""
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
    return {v: acc.result(meta(v)) for v, acc in accs.items()}


def _feature_blocks(arr: Any, view: str, rows: np.ndarray, sub: np.ndarray, rows_per_image: int,
                    images_per_chunk: int | None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(f0, block, sub_block)`` over feature blocks of ``arr`` seen in ``view``: the Gram
    rows ``rows`` (n_gram, fb) and the subsample rows ``sub`` (s, fb) of features [f0, f0+fb).

    Blocks are ranges of axis 1 (channels, or units of a dense layer), aligned to the
    store's feature chunks, as wide as :func:`gram_block_features` allows; each is read
    row chunk by row chunk (only chunks holding a needed row), so one n_gram × fb slab is
    in memory at a time, never the layer.
    """
    shape = arr.shape
    n, c = shape[0], shape[1]
    per_channel = int(np.prod(shape[2:], dtype=np.int64)) if (len(shape) > 2 and view == "flatten") else 1
    chunk_c = int(arr.chunks[1])
    fb = gram_block_features(rows.size, c * per_channel, align=chunk_c * per_channel if chunk_c < c else 1)
    cb = max(1, fb // per_channel)
    step = int(images_per_chunk or arr.chunks[0])
    need = np.unique(np.concatenate([rows, sub]) // rows_per_image)
    starts = [s for s in range(0, n, step)
              if np.searchsorted(need, s) < np.searchsorted(need, min(s + step, n))]
    for c0 in range(0, c, cb):
        c1 = min(c0 + cb, c)
        width = (c1 - c0) * per_channel
        block = np.empty((rows.size, width), dtype=arr.dtype)
        sub_block = np.empty((sub.size, width), dtype=arr.dtype)
        for s in starts:
            e = min(s + step, n)
            vb = apply_view(np.asarray(arr[s:e, c0:c1]), view)      # view rows [s·rpi, e·rpi)
            r0, r1 = s * rows_per_image, e * rows_per_image
            for idx, out in ((rows, block), (sub, sub_block)):
                i0, i1 = np.searchsorted(idx, [r0, r1])
                out[i0:i1] = vb[idx[i0:i1] - r0]
        yield c0 * per_channel, block, sub_block


def _dual_pass(arr_a: Any, arr_b: Any, view: str, labels: np.ndarray, layer: str, n: int, rows_v: int,
               da: int, db: int, n_classes: int, split_img: int, max_gram_rows: int | None, subsample_size: int,
               subsample_seed: int, minibatch_size: int, minibatch_max: int | None, alignment: bool,
               precision: str, images_per_chunk: int | None, threads: int, meta: dict[str, Any]) -> GramMoments:
    """One view in the dual form: each net's Gram from one pass over its feature blocks
    (with ``threads=2`` the two nets are read and multiplied in two threads; each owns its
    sums, so the result is the same)."""
    rpi = rows_v // n
    rows = (np.arange(rows_v, dtype=np.int64) if not max_gram_rows or rows_v <= max_gram_rows
            else subsample_indices(rows_v, int(max_gram_rows), subsample_seed))
    sub = subsample_indices(rows_v, subsample_size, subsample_seed)
    acc = GramAccumulator(da, db, rows_v, rows, sub, precision)
    failed = threading.Event()

    def run(side: str, arr: Any) -> None:
        blocks = _feature_blocks(arr, view, rows, sub, rpi, images_per_chunk)
        for f0, block, sub_block in blocks:
            if failed.is_set():
                return
            acc.add(side, f0, block, sub_block)

    if threads == 1:
        run("a", arr_a)
        run("b", arr_b)
    else:
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="moments-gram") as pool:
            futures = [pool.submit(run, side, arr) for side, arr in (("a", arr_a), ("b", arr_b))]
            try:
                wait(futures, return_when=FIRST_EXCEPTION)
            finally:
                failed.set()
            for f in futures:
                f.result()
    view_labels = repeat_targets(labels, arr_a.shape, view)
    get_logger().info("%s view %r: Grams of %d rows done", layer, view, rows.size)
    return acc.result(view_labels[rows], n_classes, view_labels[sub] if sub.size else None,
                      fold_split=split_img * rpi, minibatch_size=minibatch_size, minibatch_max=minibatch_max,
                      alignment=alignment, meta={**meta, "gram_row_seed": int(subsample_seed)})
