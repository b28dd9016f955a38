"""Wang et al. 2018, *Towards understanding learning representations*: similarity falls with depth;
maximum matches are small."""

from __future__ import annotations

import numpy as np
import pandas as pd

from convergent.findings.core import (DENSE_ARCHS, PAIR, WANG_SMALL_MATCH_MAX, Estimate, NotTestable, Outcome,
                                      Tables, calibrated_rows, depth_slope, examples_note, measure_rows,
                                      missing_levels, pair_means, unavailable_notes, verdict_below)

MEASURE = "subspace_similarity"


def _over_eps(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows averaged over the ε grid (influences too), per pair × width × layer."""
    return pair_means(rows, ["width", "layer", "layer_index"])


def wang_depth(tables: Tables, dataset: str, arch: str) -> Outcome:
    """Wang et al.: representations are less similar deeper.

    Per seed pair (cross, frozen_k = 0): the slope of the maximum-match subspace
    similarity (mean over the configured ε grid and over widths) on the layer's depth
    index, read on **calibrated** values (chance 0 at every depth: a layer's chance level
    moves with its width and spectrum); not testable without them. Needs ≥ 2 layers.
    Rule: :func:`verdict_below` 0.
    """
    rows, how = calibrated_rows(tables, dataset, arch, MEASURE)
    rows = _over_eps(rows)
    gone = missing_levels(tables, dataset, arch, MEASURE, rows, "layer_index", 2, "≥ 2 layers")
    return depth_slope(rows, verdict_below, "similarity", MEASURE, unavailable_notes(tables, dataset, arch, MEASURE),
                       gone, how=how)


def wang_small_matches(tables: Tables, dataset: str, arch: str) -> Outcome:
    """Wang et al.: the maximum-match subsets are small in intermediate conv layers.

    Conv architectures only (the claim is about conv layers, whose neurons are channels
    seen at every position). Per seed pair (cross, frozen_k = 0): the maximum-match
    similarity averaged over the ε grid, widths and the intermediate layers (all but the
    first and last; all layers when there are fewer than three). Raw values: the claim is
    about the size of the matches, not a comparison of levels.
    Rule: :func:`verdict_below` 0.5 (fewer than half the neurons matched).
    """
    if arch in DENSE_ARCHS:
        raise NotTestable(f"needs a conv arch (cnn, resnet18, wrn); this cell is {arch}")
    rows = _over_eps(measure_rows(tables, dataset, arch, MEASURE))
    depths = np.sort(rows["layer_index"].unique())
    if depths.size >= 3:
        rows = rows[rows["layer_index"].between(depths[1], depths[-2])]
    est = Estimate.of(pair_means(rows))
    verdict, reason = verdict_below(est, WANG_SMALL_MATCH_MAX)
    return Outcome(est, verdict, reason, f"layers used: {', '.join(sorted(rows['layer'].unique()))}; "
                   + examples_note(rows), decided_by=((est, WANG_SMALL_MATCH_MAX),))


__all__ = ["wang_depth", "wang_small_matches", "PAIR"]
