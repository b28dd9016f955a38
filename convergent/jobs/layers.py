"""Rule ``cka_layers`` (rules/layers.smk): every layer of one network against every layer of another."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from convergent.io import write_table
from convergent.jobs._common import _prepend_columns
from convergent.logs import get_logger, lap
from convergent.settings import LayersSettings

if TYPE_CHECKING:   # pandas is imported where a job needs it: train and extract jobs never do
    import pandas as pd


def _centred_view(store: Any, layer: str, view: str, n: int):
    """The first ``n`` images of ``layer`` in ``view``, float64, columns centred."""
    import numpy as np

    x = np.asarray(store.read_view(layer, view)[0][:n], dtype=np.float64)
    return x - x.mean(axis=0)


def cross_layer_cka(store_a: Any, store_b: Any, layers: Sequence[str],
                    settings: LayersSettings | Mapping[str, Any] | None = None, *,
                    layer_index: Mapping[str, int] | None = None, **overrides: Any) -> pd.DataFrame:
    """Every measure of every layer of network A with every layer of network B (Kornblith et al.
    Fig. 2 and Table 2): linear CKA, RBF CKA, matched correlation and the classic measures
    (:mod:`convergent.measures.crosslayer` lists the columns).

    ``settings``: :class:`~convergent.settings.LayersSettings` (config ``cka_layers``; default:
    its defaults), with keyword ``overrides`` of its fields. Rows: one per (layer_a, layer_b).
    Both stores must hold the same images in the same order (the extract stage guarantees it).
    Only the first ``max_samples`` images are used (None: all); layers wider than
    ``max_features`` go through the n×n Gram matrices (the dual form: CCA and matching are then
    unavailable, with the reason in ``note``); narrower layers through the d×d moments. Both
    forms are exact. RBF CKA uses the first ``kernel_samples`` images. ``layer_index``: each
    layer's 1-based depth in the architecture, as in the measures table (default: its position
    in ``layers``).
    """
    import dataclasses

    import pandas as pd

    from convergent.measures.crosslayer import cross_layer_measures

    s = dataclasses.replace(LayersSettings.coerce(settings), **overrides)
    n_a, n_b = store_a.n_images, store_b.n_images
    if n_a != n_b:
        raise ValueError(f"stores hold {n_a} and {n_b} images; cross-layer CKA needs the same samples")
    n = n_a if not s.max_samples else min(n_a, int(s.max_samples))
    xs_a = {layer: _centred_view(store_a, layer, s.view, n) for layer in layers}
    xs_b = {layer: _centred_view(store_b, layer, s.view, n) for layer in layers}
    depth = dict(layer_index) if layer_index else {layer: i for i, layer in enumerate(layers, start=1)}
    values = cross_layer_measures(xs_a, xs_b, s)
    rows = [{"layer_a": v["layer_a"], "layer_index_a": depth[v["layer_a"]], "layer_b": v["layer_b"],
             "layer_index_b": depth[v["layer_b"]], "view": s.view, "n_samples": n,
             "kernel_samples": min(n, int(s.kernel_samples)),
             **{k: x for k, x in v.items() if k not in ("layer_a", "layer_b")}} for v in values]
    return pd.DataFrame(rows)


def cka_layers_job(*, store_a: str, store_b: str, layers: Sequence[str], coordinates: Mapping[str, Any],
                   params: LayersSettings | Mapping[str, Any], out_csv: str,
                   layer_index: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Cross-layer measures of one cross-seed pair as a tidy table with the pair's coordinates
    (:meth:`convergent.sweep.Pair.coordinates`); ``params``: :class:`~convergent.settings.LayersSettings`."""
    from convergent.activations import ActivationStore

    lap("imports")
    log = get_logger()
    start = time.perf_counter()
    stores = ActivationStore(store_a), ActivationStore(store_b)
    lap("model")
    table = cross_layer_cka(*stores, list(layers), LayersSettings.coerce(params), layer_index=layer_index)
    _prepend_columns(table, coordinates)
    lap("compute")
    write_table(out_csv, table)
    lap("write")
    log.info("cross-layer measures of %d × %d layers on %d samples in %.2f s", len(layers), len(layers),
             int(table["n_samples"].iloc[0]) if len(table) else 0, time.perf_counter() - start)
    return table
