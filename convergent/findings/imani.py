"""Imani et al. 2022, *Representation alignment in neural networks*: alignment rises with depth and
emerges with training. Alignment is a property of one network, so these resample networks."""

from __future__ import annotations

import pandas as pd

from convergent.findings.core import (NETWORK, Outcome, NotTestable, Tables, calibrated_rows, depth_slope,
                                      measure_rows, missing_levels, pair_means, positive_difference,
                                      unavailable_notes, verdict_above)

SIDE_A = "alignment_top_c_a"


def _networks(rows_by_side: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per network (seed, order seed) × width × layer: its alignment (the ``_a`` rows belong to the
    pair's first network, ``_b`` to its second; a network in several pairs is averaged)."""
    frames = []
    for side, rows in rows_by_side.items():
        frames.append(rows.rename(columns={f"seed_{side}": "seed", f"order_seed_{side}": "order_seed"}))
    return pair_means(pd.concat(frames, ignore_index=True).fillna({c: 0.0 for c in frames[0] if c.startswith("inf_")}),
                      ["width", "layer", "layer_index"], keys=NETWORK)


def _alignment(tables: Tables, dataset: str, arch: str, control: str, calibrated: bool) -> tuple[pd.DataFrame, str]:
    if calibrated:
        got = {s: calibrated_rows(tables, dataset, arch, f"alignment_top_c_{s}", control=control) for s in "ab"}
        return _networks({s: r for s, (r, _) in got.items()}), got["a"][1].replace(SIDE_A, "alignment_top_c")
    return _networks({s: measure_rows(tables, dataset, arch, f"alignment_top_c_{s}", control=control)
                      for s in "ab"}), ""


def imani_depth(tables: Tables, dataset: str, arch: str) -> Outcome:
    """Imani et al.: alignment is higher in layers closer to the output.

    Per network (cross pairs' networks, frozen_k = 0): the slope of the target alignment of
    the top-c directions (``alignment_top_c``, mean over widths) on the layer's depth index,
    read on **calibrated** values (chance: labels permuted against the network; chance 0 at
    every depth); not testable without them. The interval resamples networks. Needs ≥ 2
    layers. Rule: :func:`verdict_above` 0.
    """
    rows, how = _alignment(tables, dataset, arch, "cross", calibrated=True)
    gone = missing_levels(tables, dataset, arch, SIDE_A, rows, "layer_index", 2, "≥ 2 layers")
    return depth_slope(rows, verdict_above, "alignment", "alignment_top_c",
                       unavailable_notes(tables, dataset, arch, SIDE_A), gone, keys=NETWORK, how=how)


def imani_emerges(tables: Tables, dataset: str, arch: str) -> Outcome:
    """Imani et al.: alignment emerges with training.

    Per network (frozen_k = 0): ``alignment_top_c`` of the trained network (cross pairs)
    minus that of the same seed's untrained network (floor pairs), averaged over widths and
    layers; the interval resamples networks (trained and untrained of a seed together).
    Raw values: both sides are at the same width and layer. Needs the floor control.
    Rule: :func:`verdict_above` 0.
    """
    trained, _ = _alignment(tables, dataset, arch, "cross", calibrated=False)
    untrained, _ = _alignment(tables, dataset, arch, "floor", calibrated=False)
    try:
        return positive_difference(trained, untrained, NETWORK + ["width", "layer"], "trained {}; untrained {}",
                                   unit_keys=NETWORK)
    except NotTestable:
        raise NotTestable("needs floor pairs with the same seeds as the cross pairs, at the same widths and "
                          "layers") from None
