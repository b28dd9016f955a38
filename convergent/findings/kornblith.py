"""Kornblith et al. 2019, *Similarity of neural network representations revisited*: layer
identification by linear CKA, CKA against the CCA family, CKA against width."""

from __future__ import annotations

import numpy as np
import pandas as pd

from convergent.findings.core import (KORNBLITH_CKA_OVER_CCA_MIN, KORNBLITH_GROUNDING_MIN, PAIR, Estimate,
                                      NotTestable, Outcome, Tables, _cell, _num, _require_levels, _with_log2_width,
                                      calibrated_rows, examples_note, like_for_like, measure_rows, missing_levels,
                                      pair_means, per_pair_slope, unavailable_notes, verdict_above)

#: the measure kornblith_width falls back to without chance levels: its chance level is 0 at every width
DEBIASED_CKA = "cka_linear_debiased"

def kornblith_grounding(tables: Tables, dataset: str, arch: str) -> Outcome:
    """Kornblith et al.: for each layer of net A the most similar layer of net B (linear CKA)
    is the same layer.

    From ``cka_layers.csv`` (layer × layer linear CKA between two seeds; cross-seed,
    frozen_k = 0 rows): per seed pair and width, the fraction of layers — of A against all
    of B's, and of B against all of A's — whose most similar layer is the corresponding
    one, averaged over widths per seed pair; the interval resamples seeds. The layer table holds
    every pair of the first three seeds of a cell (two seeds would be too few for an interval:
    the verdict then says so). Rule: :func:`verdict_above` 0.9 (the paper: 99.3 %).
    """
    c = _cell(tables.require("cka_layers"), dataset, arch)
    if c.empty:
        raise NotTestable("needs rows of this cell in cka_layers.csv")
    c = c[c["seed_a"] != c["seed_b"]]
    if "control" in c:
        c = c[c["control"] == "cross"]
    if "frozen_k" in c:
        c = c[c["frozen_k"] == 0]
    c = c[np.isfinite(c["cka_linear"].astype(float))]
    if c.empty:
        raise NotTestable("needs cross-seed, frozen_k = 0 rows in cka_layers.csv")
    _require_levels(c, "layer_a", 2, "≥ 2 layers")
    hits: dict[tuple, list[bool]] = {}
    for key, g in c.groupby(PAIR + ["width"]):
        for own, other in (("layer_a", "layer_b"), ("layer_b", "layer_a")):
            best = g.loc[g.groupby(own)["cka_linear"].idxmax(), [own, other]]
            hits.setdefault(key, []).extend((best[own] == best[other]).tolist())
    per_width = pd.DataFrame([dict(zip(PAIR + ["width"], key), value=float(np.mean(v))) for key, v in hits.items()])
    est = Estimate.of(pair_means(per_width))
    verdict, reason = verdict_above(est, KORNBLITH_GROUNDING_MIN)
    return Outcome(est, verdict, reason, f"{sum(len(v) for v in hits.values())} layer identifications over "
                   f"{per_width['width'].nunique()} width(s)", decided_by=((est, KORNBLITH_GROUNDING_MIN),))


def kornblith_cka_over_cca(tables: Tables, dataset: str, arch: str) -> Outcome:
    """Kornblith et al. (Table 2): linear CKA identifies corresponding layers better than the CCA
    family (CCA ρ̄, R²_CCA, SVCCA, PWCCA: 1–15 % against 99.3 %).

    From ``cka_layers.csv`` (cross-seed, frozen_k = 0): per seed pair (averaged over widths), the fraction of
    layer identifications (both directions, :func:`convergent.findings.layers.identified`)
    that linear CKA gets right minus the mean of the four CCA measures' fractions, **among the
    layers every one of the five measures can compare** (candidates and queries alike). The
    confound this guards against: CCA is unavailable (NaN) where a layer has more units than
    samples; counting those as failures, or letting CKA choose among layers CCA never saw,
    would credit CKA with CCA's missing values.
    Rule: :func:`verdict_above` 0.
    """
    from convergent.findings.layers import CCA_FAMILY, comparable_layers, identification_matrix, identified

    c = _cell(tables.require("cka_layers"), dataset, arch)
    missing = [m for m in ("cka_linear", *CCA_FAMILY) if m not in c.columns]
    if missing:
        raise NotTestable(f"needs columns {missing} in cka_layers.csv (the cross-layer measures)")
    c = c[c["seed_a"] != c["seed_b"]]
    if "control" in c:
        c = c[c["control"] == "cross"]
    if "frozen_k" in c:
        c = c[c["frozen_k"] == 0]
    if c.empty:
        raise NotTestable("needs cross-seed, frozen_k = 0 rows in cka_layers.csv")
    _require_levels(c, "layer_a", 2, "≥ 2 layers")
    diffs, used, total = [], 0, 0
    per_measure: dict[str, list[float]] = {m: [] for m in ("cka_linear", *CCA_FAMILY)}
    for key, g in c.groupby(PAIR + ["width"]):
        mats = {m: identification_matrix(g, m).to_numpy() for m in per_measure}
        keep = np.logical_and.reduce([comparable_layers(x) for x in mats.values()])
        total += 2 * keep.size
        if keep.sum() < 2:      # one candidate is always "identified": no test
            continue
        got = {m: identified(x, keep) for m, x in mats.items()}
        common = np.logical_and.reduce([d for d, _ in got.values()])
        if not common.any():
            continue
        used += int(common.sum())
        frac = {m: float(h[common].mean()) for m, (_, h) in got.items()}
        for m, f in frac.items():
            per_measure[m].append(f)
        diffs.append(dict(zip(PAIR + ["width"], key),
                          value=frac["cka_linear"] - float(np.mean([frac[m] for m in CCA_FAMILY]))))
    if not diffs:
        raise NotTestable("fewer than 2 layers of this cell are comparable by every measure (the CCA family is "
                          "undefined on layers with more units than samples: d1 + d2 > n - 1); raise cka_layers "
                          "max_samples or use the pool view")
    est = Estimate.of(pair_means(pd.DataFrame(diffs)))
    verdict, reason = verdict_above(est, KORNBLITH_CKA_OVER_CCA_MIN)
    return Outcome(est, verdict, reason, f"{used} of {total} identifications defined for all five measures; "
                   "mean fractions " + ", ".join(f"{m}: {_num(float(np.mean(v)))}" for m, v in per_measure.items()),
                   decided_by=((est, KORNBLITH_CKA_OVER_CCA_MIN),))


def _width_slope(tables: Tables, dataset: str, arch: str, rows: pd.DataFrame, measure: str
                 ) -> tuple[Estimate, pd.DataFrame, str]:
    """Per-seed-pair slope of ``value`` (mean over layers) per doubling of width, on the
    layers present at every width (:func:`like_for_like`). Needs ≥ 2 widths.
    Returns (slope estimate, rows used, like-for-like note)."""
    gone = missing_levels(tables, dataset, arch, measure, rows, "width", 2, "≥ 2 widths")
    rows, note = like_for_like(rows, "width", "layer", measure, unavailable_notes(tables, dataset, arch, measure))
    note = "; ".join(n for n in (gone, note) if n)
    return Estimate.of(per_pair_slope(_with_log2_width(rows), "log2_width")), rows, note


def _cka_for_levels(tables: Tables, dataset: str, arch: str) -> tuple[pd.DataFrame, str, str]:
    """(rows, measure, how) of the CKA a comparison over widths reads: calibrated linear CKA where
    measures.csv has chance levels, else debiased CKA (its chance level is 0 at every width), else
    :class:`NotTestable` naming both."""
    try:
        rows, how = calibrated_rows(tables, dataset, arch, "cka_linear")
        return rows, "cka_linear", how
    except NotTestable as no_calibrated:
        try:
            rows = measure_rows(tables, dataset, arch, DEBIASED_CKA)
        except NotTestable:
            raise NotTestable(f"{no_calibrated}; nor does it have {DEBIASED_CKA!r}, whose chance level does not "
                              "move with width") from None
        return rows, DEBIASED_CKA, (f"read on {DEBIASED_CKA} (measures.csv has no chance levels; debiased CKA's "
                                    "chance level is 0 at every width, raw linear CKA's rises with width)")


def kornblith_width(tables: Tables, dataset: str, arch: str) -> Outcome:
    """Kornblith et al.: cross-seed CKA rises (toward 1) with width.

    Per seed pair (cross, frozen_k = 0): the least-squares slope of linear CKA (mean over
    the layers present at every width) on log2(width), i.e. the change per doubling of
    width, read on **calibrated** CKA (chance 0 at every width; raw CKA of independent
    networks rises with width by itself, issue 25). Without chance levels in measures.csv:
    debiased CKA, whose chance level does not move; the reason says which. Needs ≥ 2 widths.
    Rule: :func:`verdict_above` 0.
    """
    cka, measure, how = _cka_for_levels(tables, dataset, arch)
    est, rows, note = _width_slope(tables, dataset, arch, cka, measure)
    verdict, reason = verdict_above(est, 0.0)
    by_width = pair_means(rows, ["width"]).groupby("width")["value"].mean()
    raw = pair_means(rows.assign(value=rows["raw"]), ["width"]).groupby("width")["value"].mean()
    detail = ("mean by width: " + ", ".join(f"{w}: {_num(v)}" for w, v in by_width.items())
              + (" (raw: " + ", ".join(f"{_num(v)}" for v in raw.values) + ")" if measure == "cka_linear" else "")
              + f"; {examples_note(rows)}" + (f"; {note}" if note else ""))
    return Outcome(est, verdict, f"{reason}; {how}", detail, decided_by=((est, 0.0),))
