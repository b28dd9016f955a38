"""Li et al. 2016, *Convergent learning*: reliable and unreliable units; shared subspaces, unshared bases."""

from __future__ import annotations

import numpy as np
import pandas as pd

from convergent.findings.core import (BASIS_MEASURE, LI_BOTTOM_MAX, LI_BOTTOM_RANK, LI_SUBSPACE_GAP_MIN,
                                      LI_SUBSPACE_R2_FRACTION, LI_TOP_MIN, LI_TOP_RANK, NOT_SUPPORTED, PAIR,
                                      SUBSPACE_R2_MEASURE, SUPPORTED, Estimate, NotTestable, Outcome, Tables,
                                      combine_columns, examples_note, measure_rows, pair_means, suffixed,
                                      verdict_above, verdict_reliable_and_unreliable)
from convergent.stats import units_of


def li_reliable_units(tables: Tables, dataset: str, arch: str) -> Outcome:
    """Li et al.: some units are learned reliably, others not.

    Per seed pair (cross, frozen_k = 0): the sorted one-to-one matched-correlation curve
    (``matched_corr_sorted``) read at its top decile (rank fraction 0.1) and bottom decile
    (0.9), averaged over widths and layers. The reported value is the spread top − bottom;
    the verdict is :func:`verdict_reliable_and_unreliable` (top > 0.9, bottom < 0.5), each
    end with its interval over seeds (and examples).
    """
    rows = measure_rows(tables, dataset, arch, "matched_corr_sorted")
    grid = np.sort(rows["parameter_value"].astype(float).unique())
    top_at = float(grid[np.argmin(np.abs(grid - LI_TOP_RANK))])
    bottom_at = float(grid[np.argmin(np.abs(grid - LI_BOTTOM_RANK))])
    if top_at == bottom_at:
        raise NotTestable("needs at least two rank fractions in measures.sorted_grid")
    top = pair_means(rows[np.isclose(rows["parameter_value"], top_at)])
    bottom = pair_means(rows[np.isclose(rows["parameter_value"], bottom_at)])
    both = suffixed(top, "top", PAIR).merge(suffixed(bottom, "bottom", PAIR), on=PAIR)
    e_top, e_bottom = Estimate.of(both, "value_top"), Estimate.of(both, "value_bottom")
    verdict, reason = verdict_reliable_and_unreliable(e_top, e_bottom)
    spread = Estimate.difference(pair_means(both, value="value_top"), pair_means(both, value="value_bottom"))
    return Outcome(spread, verdict, reason,
                   f"top (rank fraction {top_at:g}) {e_top}; bottom (rank fraction {bottom_at:g}) {e_bottom}; "
                   + examples_note(rows),
                   decided_by=((e_top, LI_TOP_MIN), (e_bottom, LI_BOTTOM_MAX)))


def _ceiling_rows(tables: Tables, dataset: str, arch: str, measure: str) -> tuple[pd.DataFrame, str]:
    """(rows, name) of the empirical ceiling of ``measure``: the data-order pairs when the
    sweep has them, else the self pairs (meaningful for fitted maps only)."""
    try:
        return measure_rows(tables, dataset, arch, measure, control="data_order"), "data-order ceiling"
    except NotTestable:
        return measure_rows(tables, dataset, arch, measure, control="ceiling"), "self-pair ceiling"


def li_shared_subspace(tables: Tables, dataset: str, arch: str) -> Outcome:
    """Li et al.: units span subspaces that are shared while the basis vectors are not.

    Per seed pair (cross, frozen_k = 0), per (width, layer): the held-out R² of the L1
    linear map predicting B's units from all of A's (``sparse_r2_heldout``: α chosen on
    fold 0 by fits on fold 1, R² on fold 1 of the fit on fold 0), and the held-out
    one-to-one matched correlation r̄ (``hungarian_mean_corr_cv``: matched on fold 0,
    correlated on fold 1). Two conditions, both with intervals over seeds (and examples):

    * the map is good: mean R² / mean ceiling R² > :data:`LI_SUBSPACE_R2_FRACTION`, the
      ceiling being the data-order pairs' R² (the self pair's when controls.data_order is
      off; the reason says which) on the same widths and layers; the ratio of the two means,
      their seeds drawn jointly (an order seed is a seed of the cross pairs too);
    * one-to-one matching is clearly worse: R² − r̄² > :data:`LI_SUBSPACE_GAP_MIN`.

    A rotated copy (shared subspace, no shared basis) passes both; a permuted copy (shared
    basis) fails the second; 20 % shared variance fails the first. Reported value: the gap.
    """
    r2 = measure_rows(tables, dataset, arch, SUBSPACE_R2_MEASURE)
    corr = measure_rows(tables, dataset, arch, BASIS_MEASURE)
    ceiling, ceiling_name = _ceiling_rows(tables, dataset, arch, SUBSPACE_R2_MEASURE)
    ceiling = ceiling[ceiling["frozen_k"] == 0]
    keys = PAIR + ["width", "layer"]
    both = suffixed(r2, "r2", keys).merge(suffixed(corr, "corr", keys), on=keys)
    both = both[both.set_index(["width", "layer"]).index.isin(ceiling.set_index(["width", "layer"]).index)]
    if both.empty:
        raise NotTestable(f"needs {SUBSPACE_R2_MEASURE}, {BASIS_MEASURE} and the {ceiling_name} "
                          "for the same widths and layers")
    ceiling = ceiling[ceiling.set_index(["width", "layer"]).index.isin(both.set_index(["width", "layer"]).index)]
    # R² − r̄² per row; its example influence by the delta method: I_R² − 2 r̄ I_r̄
    r2_inf = both[[c for c in both if c.startswith("inf_r2_")]].to_numpy(float)
    corr_inf = both[[c for c in both if c.startswith("inf_corr_")]].to_numpy(float)
    gap_inf = r2_inf - 2 * both["value_corr"].to_numpy(float)[:, None] * corr_inf if r2_inf.size else None
    gap_rows = combine_columns(both, (both["value_r2"] - both["value_corr"] ** 2).to_numpy(float), gap_inf)
    gap = Estimate.of(pair_means(gap_rows))
    map_r2 = pair_means(both, value="value_r2")
    ceiling_r2 = pair_means(ceiling)
    fraction = Estimate.groups({"map": units_of(map_r2), "ceiling": units_of(ceiling_r2)},
                               lambda m: m["map"] / m["ceiling"])
    v_frac, why_frac = verdict_above(fraction, LI_SUBSPACE_R2_FRACTION)
    v_gap, why_gap = verdict_above(gap, LI_SUBSPACE_GAP_MIN)
    verdict = SUPPORTED if v_frac == v_gap == SUPPORTED else NOT_SUPPORTED
    map_est = Estimate.of(map_r2)
    return Outcome(gap, verdict, f"linear-map R² as a fraction of the {ceiling_name}: {why_frac}; "
                   f"R² minus one-to-one r̄²: {why_gap}",
                   f"linear-map R² {map_est}; {ceiling_name} R² {Estimate.of(ceiling_r2)}; one-to-one r̄ "
                   f"{Estimate.of(pair_means(both, value='value_corr'))}; {examples_note(r2)}",
                   reference=f"map R² {map_est} = {fraction} of the {ceiling_name}'s",
                   decided_by=((fraction, LI_SUBSPACE_R2_FRACTION), (gap, LI_SUBSPACE_GAP_MIN)))


