"""Brown et al. 2023, *Privileged bases in the transformer residual stream* / on convergence of
bases: (a) a privileged basis, (b) no unique basis, (c) freezing, (d) LMC against basis correlation."""

from __future__ import annotations

import numpy as np

from convergent.findings.core import (BASIS_FLAT_CHANCE, BASIS_MEASURE, BROWN_BASIS_RISE_MAX, BROWN_CEILING_GAP_MIN,
                                      LMC_SPLIT, LMC_VARIANT, PAIR, Estimate, NotTestable, Outcome, Tables, _cell,
                                      _num, _require_levels, _with_log2_width, calibrated_rows, examples_note,
                                      measure_rows, pair_means, per_pair_slope, positive_difference, verdict_above,
                                      verdict_lmc_not_basis)
from convergent.findings.kornblith import _width_slope
from convergent.stats import Units

def brown_privileged_basis(tables: Tables, dataset: str, arch: str) -> Outcome:
    """Brown et al. (a): a ReLU network's basis is privileged, a linear network's is not.

    From ``rotation.csv``: for each (reference seed, width, layer), the drop of retrained
    test accuracy from the identity (strength 0) to the strongest rotation, ReLU network
    minus linear control, averaged over layers per rotated network. The rotation test runs
    on the reference seed only, so the interval resamples its **networks** (one per seed ×
    width; they share the seed's minibatch order, so with one seed this is optimistic, and
    the detail says how many seeds). Needs ≥ 2 strengths including 0 and the linear
    control. Rule: :func:`verdict_above` 0.
    """
    r = _cell(tables.require("rotation"), dataset, arch)
    if r.empty:
        raise NotTestable("needs rows of this cell in rotation.csv")
    strengths = np.sort(r["strength"].astype(float).unique())
    if strengths.size < 2 or not np.isclose(strengths[0], 0.0):
        raise NotTestable("needs ≥ 2 rotation strengths including 0 (rotation.strengths)")
    if r["linear"].astype(str).str.lower().eq("true").sum() == 0:
        raise NotTestable("needs the linear control rows of rotation.csv")
    r = r.assign(linear=r["linear"].astype(str).str.lower().eq("true"), strength=r["strength"].astype(float))
    top = strengths[-1]
    keys = ["seed", "width", "layer"]
    acc = r.pivot_table(index=keys + ["linear"], columns="strength", values="retrained_test_acc", aggfunc="mean")
    drop = (acc[strengths[0]] - acc[top]).unstack("linear").dropna()
    if drop.empty or not {True, False} <= set(drop.columns):
        raise NotTestable("needs ReLU and linear rows for the same layers in rotation.csv")
    per_net = drop.assign(diff=drop[False] - drop[True]).groupby(level=["seed", "width"]).mean()
    labels = tuple((f"seed {s} width {w}",) for s, w in per_net.index)
    est, relu, linear = (Estimate.groups({"value": Units(per_net[c].to_numpy(float), labels)})
                         for c in ("diff", False, True))
    verdict, reason = verdict_above(est, 0.0)
    seeds = sorted(set(per_net.index.get_level_values("seed")))
    return Outcome(est, verdict, reason,
                   f"retrained-accuracy drop at strength {top:g}: ReLU {relu}, linear {linear}; {len(per_net)} "
                   f"rotated networks (seed {', '.join(map(str, seeds))} × width)", decided_by=((est, 0.0),))


def brown_no_unique_basis(tables: Tables, dataset: str, arch: str) -> Outcome:
    """Brown et al. (b): different seeds do not converge to a unique basis, even when wide.

    At the widest width (frozen_k = 0): the data-order ceiling's basis correlation
    (``hungarian_mean_corr_cv`` of the reference network against the same initial weights
    trained in another minibatch order: what SGD noise alone leaves) minus the cross-seed
    basis correlation, over the layers both have. The interval resamples the order seeds of
    the data-order pairs and the seeds of the cross pairs jointly (an order seed is also a
    seed of the cross pairs; the reference network is fixed). Needs controls.data_order (the self pair's held-out
    basis correlation is 1 by construction, so it cannot be the reference). Not testable
    when the ceiling does not lie above the floor (untrained pairs): then SGD noise alone
    scrambles the basis and a gap below it means nothing. Rule: :func:`verdict_above` 0.1.
    The gap at every width is in the detail ("even when wide": the widest decides).
    """
    cross = measure_rows(tables, dataset, arch, BASIS_MEASURE)
    try:
        order = measure_rows(tables, dataset, arch, BASIS_MEASURE, control="data_order")
    except NotTestable:
        raise NotTestable("needs the data-order control (controls.data_order: true): the self-pair "
                          "ceiling's held-out basis correlation is 1 by construction, no empirical reference")
    widest = int(cross["width"].max())
    order_w = order[order["width"] == widest]
    if order_w.empty:
        raise NotTestable(f"needs data-order pairs at the widest width {widest}")
    cross_w = cross[cross["width"] == widest]
    layers = sorted(set(cross_w["layer"]) & set(order_w["layer"]))
    cross_w, order_w = cross_w[cross_w["layer"].isin(layers)], order_w[order_w["layer"].isin(layers)]
    ceiling = pair_means(order_w)
    crossing = pair_means(cross_w)
    extra = ""
    try:
        floor = measure_rows(tables, dataset, arch, BASIS_MEASURE, control="floor")
    except NotTestable:
        floor = None   # no floor control: the headroom check is skipped, and the detail says so
    floor = None if floor is None else floor[(floor["width"] == widest) & floor["layer"].isin(layers)]
    if floor is not None and not floor.empty:
        f_est, c_est = Estimate.of(pair_means(floor)), Estimate.of(ceiling)
        if not c_est.ci_low > f_est.ci_high:
            raise NotTestable(f"the data-order ceiling {c_est} does not lie above the floor (untrained "
                              f"pairs) {f_est} at width {widest}: SGD noise alone scrambles the basis, "
                              "so the cross-seed gap has no headroom to mean anything")
        extra = f"; floor (untrained) {f_est}"
    else:
        extra = "; no floor pairs to check the ceiling's headroom against"
    est = Estimate.difference(ceiling, crossing)
    verdict, reason = verdict_above(est, BROWN_CEILING_GAP_MIN)
    extra += f"; {examples_note(cross_w)}"
    by_width = []
    for w in sorted(set(cross["width"]) & set(order["width"])):
        c, o = cross[cross["width"] == w], order[order["width"] == w]
        common = set(c["layer"]) & set(o["layer"])
        if common:
            gap = o[o["layer"].isin(common)]["value"].mean() - c[c["layer"].isin(common)]["value"].mean()
            by_width.append(f"{w}: {_num(float(gap))}")
    return Outcome(est, verdict, f"data-order ceiling minus cross-seed basis correlation at width {widest}: {reason}",
                   reference=f"data-order ceiling {Estimate.of(ceiling)}, cross-seed {Estimate.of(crossing)}",
                   detail=f"width {widest}: cross-seed {Estimate.of(crossing)}, data-order ceiling "
                   f"{Estimate.of(ceiling)} "
                   f"({len(layers)} layers){extra}; gap by width: {', '.join(by_width)}",
                   decided_by=((est, BROWN_CEILING_GAP_MIN),))


def brown_freezing(tables: Tables, dataset: str, arch: str) -> Outcome:
    """Brown et al. (c): freezing the first k layers identically raises basis correlation.

    Per seed pair: basis correlation (``hungarian_mean_corr_cv``) with frozen_k = k > 0
    minus frozen_k = 0, same width and layer, over the layers *above* the frozen ones
    (the frozen layers are identical, correlation 1, by construction), averaged over
    every k > 0, width and such layer, on **calibrated** values (the two sides' chance levels
    need not agree: freezing changes the layers' spectra); without chance levels on the raw
    held-out correlation, whose chance level is 0 (:data:`BASIS_FLAT_CHANCE`).
    Needs frozen_k > 0. Rule: :func:`verdict_above` 0 (the paper's "markedly" is not
    quantified, so only the direction is tested).
    """
    rows, how = calibrated_rows(tables, dataset, arch, BASIS_MEASURE, frozen_k=None,
                                flat_chance=BASIS_FLAT_CHANCE)
    ks = sorted(int(k) for k in rows["frozen_k"].unique() if k > 0)
    if not ks:
        raise NotTestable("needs frozen_k > 0 in the sweep")
    if not (rows["frozen_k"] == 0).any():
        raise NotTestable("needs frozen_k = 0 in the sweep (the unfrozen baseline)")
    keys = PAIR + ["width", "layer", "layer_index"]
    base = rows[rows["frozen_k"] == 0]
    frozen = rows[(rows["frozen_k"] > 0) & (rows["layer_index"] > rows["frozen_k"])]
    if frozen.empty:
        raise NotTestable(f"needs a layer above the frozen ones (frozen_k = {ks} covers every layer)")
    try:
        return positive_difference(frozen, base, keys, f"frozen_k {ks}: frozen {{}} vs free {{}} (layers above k)",
                                   how=how)
    except NotTestable:
        raise NotTestable("needs frozen and unfrozen runs with the same seeds and widths") from None


def brown_lmc_width(tables: Tables, dataset: str, arch: str) -> Outcome:
    """Brown et al. (d): linear mode connectivity improves with width, but not because
    basis correlation improves.

    Per seed pair (cross, frozen_k = 0): the slope per doubling of width of the test-error
    barrier of plain interpolation (``lmc.csv``, variant ``naive``), and of the basis
    correlation (``hungarian_mean_corr_cv``, mean over the layers present at every width,
    **calibrated**: chance 0 at every width; raw without chance levels, see
    :data:`BASIS_FLAT_CHANCE`).
    Needs ≥ 2 widths. Rule: :func:`verdict_lmc_not_basis` (barrier slope < 0 and basis
    slope < 0.05). The reported value is the barrier slope. With the data-order control the
    detail gives its barrier too (Frankle et al.: training is stable when it is near 0).
    """
    lmc_all = _cell(tables.require("lmc"), dataset, arch)
    lmc_all = lmc_all[(lmc_all["variant"] == LMC_VARIANT) & (lmc_all["split"] == LMC_SPLIT)
                      & (lmc_all["frozen_k"] == 0)]
    lmc_all = lmc_all[np.isfinite(lmc_all["error_barrier"].astype(float))]
    lmc = lmc_all[lmc_all["control"] == "cross"]
    if lmc.empty:
        raise NotTestable(f"needs {LMC_VARIANT!r} {LMC_SPLIT}-split frozen_k = 0 cross-seed rows in lmc.csv")
    _require_levels(lmc, "width", 2, "≥ 2 widths")
    barrier = Estimate.of(per_pair_slope(_with_log2_width(lmc.rename(columns={"error_barrier": "value"})),
                                         "log2_width"))
    basis_rows, how = calibrated_rows(tables, dataset, arch, BASIS_MEASURE, flat_chance=BASIS_FLAT_CHANCE)
    basis, _, note = _width_slope(tables, dataset, arch, basis_rows, BASIS_MEASURE)
    verdict, reason = verdict_lmc_not_basis(barrier, basis)
    reason += f"; basis correlation {how}"
    by_width = lmc.groupby("width")["error_barrier"].mean()
    detail = (f"basis-correlation slope per doubling {basis}; mean test-error barrier by width: "
              + ", ".join(f"{w}: {_num(v)}" for w, v in by_width.items()))
    order = lmc_all[lmc_all["control"] == "data_order"]
    if not order.empty:
        detail += ("; data-order (SGD-noise) barrier by width: "
                   + ", ".join(f"{w}: {_num(v)}" for w, v in order.groupby("width")["error_barrier"].mean().items()))
    return Outcome(barrier, verdict, reason, detail + (f"; {note}" if note else ""),
                   decided_by=((barrier, 0.0), (basis, BROWN_BASIS_RISE_MAX)))


