"""Replication summary: does this sweep reproduce the five papers' findings?

For every finding of SPEC.md that a sweep can test, one **statistic** is computed from
the tidy tables of ``results/summary/`` (runs, measures, lmc, rotation and, when
present, cka_layers), **per seed pair** (two runs that differ only in seed). Its
value is the mean over seed pairs with a 95 % percentile bootstrap interval over
seed pairs (:func:`convergent.stats.bootstrap_ci`). A small, named **verdict rule**
with a stated threshold turns the interval into one of

* ``supported``      the whole interval lies on the side the paper predicts;
* ``not supported``  it does not: *contradicted* (wholly on the other side) or
  *inconclusive* (it contains the threshold) — the reason says which;
* ``not testable``   the sweep lacks what the statistic needs; the reason says what
  (e.g. "needs ≥ 2 widths", "needs frozen_k > 0", "needs a conv arch").

Every finding is evaluated separately for each (dataset, arch) cell of the sweep.
A trend over width or depth compares like with like: a slope over width uses only the
layers present at every width compared, a slope over depth only the widths present at
every layer (:func:`like_for_like`); what was left out is named in the detail, and when
nothing is left the reason names the measure and why it is missing.

Ceilings: with ``controls.data_order`` the *data-order* pairs (the reference network
against the same initial weights trained in another minibatch order) are the empirical
ceiling of "different initialisations converge to one basis" (brown_b) and of the
linear map's R² (li_subspace). The self-pair ceiling (a network with itself, fitted on
one half of the data and evaluated on the other) is a ceiling only for fitted maps: its
held-out basis correlation is 1 by construction.

Pairs that share a seed are not independent (3 seeds give 3 pairs from 3 networks),
so with few seeds the interval is optimistic; with a single seed pair it collapses
to the value, and the reason says so.

The module never imports Snakemake; ``scripts/findings.py`` is its entry point.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from convergent.io import read_table
from convergent.stats import bootstrap_ci

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
NOT_TESTABLE = "not testable"

#: the summary tables a finding may read, by name; file ``results/summary/<name>.csv``
TABLE_NAMES = ("runs", "measures", "lmc", "rotation", "cka_layers")
#: a pair's identity: its two seeds and the seeds of their minibatch order (data-order control)
PAIR = ["seed_a", "seed_b", "order_seed_a", "order_seed_b"]
#: architectures whose hidden layers are dense (every other known arch is convolutional)
DENSE_ARCHS = frozenset({"mlp"})

# --------------------------------------------------------------------------- thresholds
# Each verdict rule reads one of these; findings.md prints them next to the verdict.
LI_TOP_MIN = 0.9          # "reliable" units: top-decile matched correlation above this
LI_BOTTOM_MAX = 0.5       # "unreliable" units: bottom-decile matched correlation below this
LI_TOP_RANK = 0.1         # rank fraction of the sorted matched-correlation curve read as "top"
LI_BOTTOM_RANK = 0.9      # ... and as "bottom" (0 = best matched unit, 1 = worst)
LI_SUBSPACE_GAP_MIN = 0.1  # R² of the linear map minus one-to-one r̄², in variance explained
LI_SUBSPACE_R2_FRACTION = 0.8  # the linear map's held-out R² reaches this fraction of the ceiling's
SUBSPACE_R2_MEASURE = "sparse_r2_heldout"   # L1 map A→B: α chosen on fold 0, R² on fold 1
KORNBLITH_GROUNDING_MIN = 0.9   # Kornblith et al. found 99.3 % with linear CKA
KORNBLITH_CKA_OVER_CCA_MIN = 0.0   # identification fraction, linear CKA minus the CCA family's mean
WANG_SMALL_MATCH_MAX = 0.5      # "small" maximum matches: fewer than half the neurons matched
BROWN_CEILING_GAP_MIN = 0.1     # basis correlation at least this far below the data-order ceiling
BROWN_BASIS_RISE_MAX = 0.05     # "basis correlation does not rise": < 0.05 per doubling of width
BASIS_MEASURE = "hungarian_mean_corr_cv"   # Brown et al.'s basis correlation, held-out fold
LMC_VARIANT = "naive"            # the plain interpolation θ(α) = (1−α)θ_A + αθ_B
LMC_SPLIT = "test"


class NotTestable(Exception):
    """The sweep cannot test a finding; the message says what would be needed."""


@dataclass(frozen=True)
class Tables:
    """The tidy summary tables; a table that does not exist is ``None``."""

    runs: pd.DataFrame | None = None
    measures: pd.DataFrame | None = None
    lmc: pd.DataFrame | None = None
    rotation: pd.DataFrame | None = None
    cka_layers: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        # tables written before the data-order control lack its coordinates: order seed = seed,
        # and an LMC or layer table without a control column holds cross-seed pairs only
        for name in ("measures", "lmc", "cka_layers"):
            frame = getattr(self, name)
            if frame is None or not {"seed_a", "seed_b"} <= set(frame.columns):
                continue
            missing = {f"order_seed_{s}": frame[f"seed_{s}"] for s in "ab" if f"order_seed_{s}" not in frame}
            if "control" not in frame:
                missing["control"] = "cross"
            if missing:
                object.__setattr__(self, name, frame.assign(**missing))

    def require(self, name: str) -> pd.DataFrame:
        """The table ``name``, or :class:`NotTestable` naming the missing file."""
        frame = getattr(self, name)
        if frame is None or frame.empty:
            raise NotTestable(f"needs results/summary/{name}.csv")
        return frame


def summary_tables(targets: Iterable[str], summary_dir: str = "results/summary") -> dict[str, str]:
    """{name: path} of the tables of :data:`TABLE_NAMES` among ``targets`` (e.g. a workflow's
    final targets): the findings read whichever tables the configured sweep makes."""
    wanted = set(targets)
    return {name: f"{summary_dir}/{name}.csv" for name in TABLE_NAMES if f"{summary_dir}/{name}.csv" in wanted}


def load_tables(paths: Mapping[str, str | os.PathLike | None]) -> Tables:
    """Read the tables of ``paths`` ({name: csv path}); missing or absent files become ``None``."""
    unknown = set(paths) - set(TABLE_NAMES)
    if unknown:
        raise ValueError(f"unknown tables {sorted(unknown)}; known: {', '.join(TABLE_NAMES)}")
    frames = {}
    for name, path in paths.items():
        if path is not None and Path(path).is_file() and Path(path).stat().st_size > 0:
            frames[name] = read_table(path)
    return Tables(**frames)


def load_summary_dir(summary_dir: str | os.PathLike) -> Tables:
    """Every ``<name>.csv`` of :data:`TABLE_NAMES` found in ``summary_dir``."""
    return load_tables({name: Path(summary_dir) / f"{name}.csv" for name in TABLE_NAMES})


# --------------------------------------------------------------------------- estimates

@dataclass(frozen=True)
class Estimate:
    """Mean of a statistic over resampling units with its 95 % bootstrap interval."""

    value: float
    ci_low: float
    ci_high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray | pd.Series) -> Estimate:
        vals = np.asarray(values, dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        if vals.size == 0:
            raise NotTestable("no finite values of the statistic")
        lo, hi = bootstrap_ci(vals)
        return cls(float(vals.mean()), lo, hi, int(vals.size))

    @classmethod
    def difference(cls, left: Sequence[float] | np.ndarray | pd.Series,
                   right: Sequence[float] | np.ndarray | pd.Series, n_boot: int = 2000, seed: int = 0
                   ) -> Estimate:
        """mean(left) − mean(right) with a 95 % percentile interval resampling both groups
        independently (e.g. data-order pairs against cross-seed pairs); ``n`` is len(right)."""
        a, b = (np.asarray(v, dtype=np.float64) for v in (left, right))
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        if a.size == 0 or b.size == 0:
            raise NotTestable("no finite values of the statistic")
        rng = np.random.default_rng(seed)
        boot = (a[rng.integers(0, a.size, (n_boot, a.size))].mean(1)
                - b[rng.integers(0, b.size, (n_boot, b.size))].mean(1))
        lo, hi = np.quantile(boot, [0.025, 0.975]) if a.size + b.size > 2 else (a.mean() - b.mean(),) * 2
        return cls(float(a.mean() - b.mean()), float(lo), float(hi), int(b.size))

    @property
    def degenerate(self) -> bool:
        """One unit only: the interval is the value itself, not a measure of spread."""
        return self.n < 2

    def __str__(self) -> str:
        return f"{_num(self.value)} [{_num(self.ci_low)}, {_num(self.ci_high)}]"


def _num(x: float) -> str:
    return "nan" if not np.isfinite(x) else f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


# --------------------------------------------------------------------------- verdict rules

def verdict_above(est: Estimate, threshold: float) -> tuple[str, str]:
    """Supported iff the whole interval lies above ``threshold`` (ci_low > threshold)."""
    if est.ci_low > threshold:
        return SUPPORTED, f"the 95 % interval {est} lies above {threshold:g}"
    if est.ci_high < threshold:
        return NOT_SUPPORTED, f"contradicted: the 95 % interval {est} lies below {threshold:g}"
    return NOT_SUPPORTED, f"inconclusive: the 95 % interval {est} contains {threshold:g}"


def verdict_below(est: Estimate, threshold: float) -> tuple[str, str]:
    """Supported iff the whole interval lies below ``threshold`` (ci_high < threshold)."""
    if est.ci_high < threshold:
        return SUPPORTED, f"the 95 % interval {est} lies below {threshold:g}"
    if est.ci_low > threshold:
        return NOT_SUPPORTED, f"contradicted: the 95 % interval {est} lies above {threshold:g}"
    return NOT_SUPPORTED, f"inconclusive: the 95 % interval {est} contains {threshold:g}"


def verdict_reliable_and_unreliable(top: Estimate, bottom: Estimate) -> tuple[str, str]:
    """Li et al.: supported iff top-decile matched correlation > :data:`LI_TOP_MIN` (ci_low)
    **and** bottom-decile < :data:`LI_BOTTOM_MAX` (ci_high): the sorted curve spans both."""
    v_top, why_top = verdict_above(top, LI_TOP_MIN)
    v_bot, why_bot = verdict_below(bottom, LI_BOTTOM_MAX)
    verdict = SUPPORTED if v_top == v_bot == SUPPORTED else NOT_SUPPORTED
    return verdict, f"top decile: {why_top}; bottom decile: {why_bot}"


def verdict_lmc_not_basis(barrier_slope: Estimate, basis_slope: Estimate) -> tuple[str, str]:
    """Brown et al. (d): supported iff the LMC barrier falls with width (slope ci_high < 0)
    **and** basis correlation does not rise correspondingly (its slope per doubling of
    width has ci_high < :data:`BROWN_BASIS_RISE_MAX`)."""
    v_bar, why_bar = verdict_below(barrier_slope, 0.0)
    v_bas, why_bas = verdict_below(basis_slope, BROWN_BASIS_RISE_MAX)
    verdict = SUPPORTED if v_bar == v_bas == SUPPORTED else NOT_SUPPORTED
    return verdict, f"barrier slope: {why_bar}; basis-correlation slope: {why_bas}"


# --------------------------------------------------------------------------- selection helpers

_CONTROL_NEEDS = {"floor": "the floor control (controls.floor: true)",
                  "ceiling": "the ceiling control (controls.ceiling: true)",
                  "cross": "the cross control (controls.cross: true)",
                  "data_order": "the data-order control (controls.data_order: true)"}


def _cell(frame: pd.DataFrame, dataset: str, arch: str) -> pd.DataFrame:
    return frame[(frame["dataset"] == dataset) & (frame["arch"] == arch)]


def measure_rows(tables: Tables, dataset: str, arch: str, measure: str, *, control: str = "cross",
                 frozen_k: int | None = 0, parameter_value: float | None = None) -> pd.DataFrame:
    """Finite rows of one measure in one cell; :class:`NotTestable` says what is missing."""
    m = _cell(tables.require("measures"), dataset, arch)
    rows = m[m["measure"] == measure]
    if rows.empty:
        raise NotTestable(f"needs measure {measure!r} in measures.csv (its measure family enabled)")
    if not (rows["control"] == control).any():
        raise NotTestable(f"needs {_CONTROL_NEEDS.get(control, control)}")
    rows = rows[rows["control"] == control]
    if frozen_k is not None:
        rows = rows[rows["frozen_k"] == frozen_k]
        if rows.empty:
            raise NotTestable(f"needs frozen_k = {frozen_k} in the sweep")
    if parameter_value is not None:
        rows = rows[np.isclose(rows["parameter_value"].astype(float), parameter_value)]
    finite = rows[np.isfinite(rows["value"].astype(float))]
    if finite.empty:
        notes = rows["note"].dropna().unique() if "note" in rows else []
        why = f" ({notes[0]})" if len(notes) else ""
        raise NotTestable(f"measure {measure!r} is unavailable in every row{why}")
    return finite


def pair_means(frame: pd.DataFrame, by: Sequence[str] = (), value: str = "value") -> pd.DataFrame:
    """Mean of ``value`` per seed pair and ``by``; the result has a ``value`` column."""
    keys = PAIR + list(by)
    return frame.groupby(keys, as_index=False)[value].mean().rename(columns={value: "value"})


def per_pair_slope(frame: pd.DataFrame, x: str) -> pd.Series:
    """Least-squares slope of ``value`` on ``x`` within each seed pair (rows averaged per x first).

    Pairs seen at fewer than two distinct ``x`` have no slope and are dropped.
    """
    means = pair_means(frame, [x])
    slopes = {}
    for key, g in means.groupby(PAIR):
        if g[x].nunique() >= 2:
            slopes[key] = float(np.polyfit(g[x].to_numpy(float), g["value"].to_numpy(float), 1)[0])
    return pd.Series(slopes, dtype=float)


def _with_log2_width(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(log2_width=np.log2(frame["width"].astype(float)))


def _require_levels(frame: pd.DataFrame, column: str, minimum: int, need: str) -> None:
    if frame[column].nunique() < minimum:
        raise NotTestable(f"needs {need} (this sweep has {frame[column].nunique()})")


def unavailable_notes(tables: Tables, dataset: str, arch: str, measure: str, control: str = "cross") -> str:
    """The distinct notes of the NaN rows of ``measure`` in a cell ("" when none): why it is missing."""
    m = tables.measures
    if m is None or "note" not in m:
        return ""
    rows = _cell(m, dataset, arch)
    rows = rows[(rows["measure"] == measure) & (rows["control"] == control)
                & ~np.isfinite(rows["value"].astype(float))]
    notes = sorted(set(rows["note"].dropna().astype(str)) - {""})
    return "; ".join(f"{', '.join(sorted(map(str, rows.loc[rows['note'] == n, 'layer'].unique())))}: {n}"
                     for n in notes)


def missing_levels(tables: Tables, dataset: str, arch: str, measure: str, rows: pd.DataFrame, level: str,
                   minimum: int, need: str) -> str:
    """Levels of ``level`` (e.g. width) at which ``measure`` has rows in the table but no finite
    value in ``rows``: a note naming them and why ("" when none). :class:`NotTestable` when
    fewer than ``minimum`` levels are left, naming the measure and the cause."""
    m = _cell(tables.require("measures"), dataset, arch)
    m = m[(m["measure"] == measure) & (m["control"] == "cross")]
    if "frozen_k" in rows and rows["frozen_k"].nunique() == 1:
        m = m[m["frozen_k"] == rows["frozen_k"].iloc[0]]
    gone = sorted(set(m[level]) - set(rows[level]))
    why = unavailable_notes(tables, dataset, arch, measure)
    left = rows[level].nunique()
    if left < minimum:
        if gone:
            raise NotTestable(f"{measure}: needs {need} with values; unavailable at {level} "
                              f"{', '.join(map(str, gone))}" + (f" ({why})" if why else ""))
        raise NotTestable(f"needs {need} (this sweep has {left})")
    if not gone:
        return ""
    return f"{level} {', '.join(map(str, gone))} left out ({measure} unavailable there" + (f": {why})" if why else ")")


def like_for_like(rows: pd.DataFrame, level: str, unit: str, measure: str, why_missing: str = ""
                  ) -> tuple[pd.DataFrame, str]:
    """Rows restricted to the ``unit`` values (e.g. layers) present at *every* ``level`` (e.g.
    width) of ``rows``, so a trend over ``level`` compares the same units at each level.

    Returns (rows, note); the note names what was left out ("" when nothing was). When no
    unit is present at every level, :class:`NotTestable` names ``measure``, the units and
    ``why_missing`` (the unavailable rows' notes), not a missing option.
    """
    levels = rows[level].unique()
    present = rows.groupby(unit)[level].nunique()
    keep = present.index[present == len(levels)]
    dropped = sorted(map(str, present.index[present < len(levels)]))
    if keep.empty:
        raise NotTestable(f"{measure}: no {unit} is available at every {level} compared "
                          f"({', '.join(map(str, sorted(levels)))})" + (f"; {why_missing}" if why_missing else ""))
    note = ""
    if dropped:
        note = (f"like for like: {unit} {', '.join(dropped)} left out (not available at every {level})"
                + (f"; {why_missing}" if why_missing else ""))
    return rows[rows[unit].isin(keep)], note


# --------------------------------------------------------------------------- outcome & finding

@dataclass(frozen=True)
class Outcome:
    """What a finding's evaluation returns for one cell. ``reference``: the value the statistic
    is measured against when it is itself measured (e.g. the data-order ceiling), shown next
    to the value in the summary table."""

    estimate: Estimate
    verdict: str
    reason: str
    detail: str = ""
    reference: str = ""


@dataclass(frozen=True)
class Finding:
    """One testable claim: its statistic, verdict rule and evaluation function; ``flip`` says
    what result would have made the verdict come out the other way."""

    id: str
    paper: str
    claim: str
    statistic: str
    rule: str
    unit: str
    evaluate: Callable[[Tables, str, str], Outcome] = field(repr=False)
    flip: str = ""


# --------------------------------------------------------------------------- Li et al. 2016

def li_reliable_units(tables: Tables, dataset: str, arch: str) -> Outcome:
    """Li et al.: some units are learned reliably, others not.

    Per seed pair (cross, frozen_k = 0): the sorted one-to-one matched-correlation curve
    (``matched_corr_sorted``) read at its top decile (rank fraction 0.1) and bottom decile
    (0.9), averaged over widths and layers. The reported value is the spread top − bottom;
    the verdict is :func:`verdict_reliable_and_unreliable` (top > 0.9, bottom < 0.5).
    """
    rows = measure_rows(tables, dataset, arch, "matched_corr_sorted")
    grid = np.sort(rows["parameter_value"].astype(float).unique())
    top_at = float(grid[np.argmin(np.abs(grid - LI_TOP_RANK))])
    bottom_at = float(grid[np.argmin(np.abs(grid - LI_BOTTOM_RANK))])
    if top_at == bottom_at:
        raise NotTestable("needs at least two rank fractions in measures.sorted_grid")
    top = pair_means(rows[np.isclose(rows["parameter_value"], top_at)])
    bottom = pair_means(rows[np.isclose(rows["parameter_value"], bottom_at)])
    both = top.merge(bottom, on=PAIR, suffixes=("_top", "_bottom"))
    e_top, e_bottom = Estimate.of(both["value_top"]), Estimate.of(both["value_bottom"])
    verdict, reason = verdict_reliable_and_unreliable(e_top, e_bottom)
    spread = Estimate.of(both["value_top"] - both["value_bottom"])
    return Outcome(spread, verdict, reason,
                   f"top (rank fraction {top_at:g}) {e_top}; bottom (rank fraction {bottom_at:g}) {e_bottom}")


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
    correlated on fold 1). Two conditions, both with intervals over seed pairs:

    * the map is good: R² / ceiling R² > :data:`LI_SUBSPACE_R2_FRACTION`, the ceiling
      being the data-order pairs' R² (the self pair's when controls.data_order is off;
      the reason says which), per layer, on the same widths and layers;
    * one-to-one matching is clearly worse: R² − r̄² > :data:`LI_SUBSPACE_GAP_MIN`.

    A rotated copy (shared subspace, no shared basis) passes both; a permuted copy (shared
    basis) fails the second; 20 % shared variance fails the first. Reported value: the gap.
    """
    r2 = measure_rows(tables, dataset, arch, SUBSPACE_R2_MEASURE)
    corr = measure_rows(tables, dataset, arch, BASIS_MEASURE)
    ceiling, ceiling_name = _ceiling_rows(tables, dataset, arch, SUBSPACE_R2_MEASURE)
    ceiling = ceiling[ceiling["frozen_k"] == 0].groupby(["width", "layer"], as_index=False)["value"].mean()
    keys = PAIR + ["width", "layer"]
    both = (r2[keys + ["value"]].merge(corr[keys + ["value"]], on=keys, suffixes=("_r2", "_corr"))
            .merge(ceiling.rename(columns={"value": "value_ceiling"}), on=["width", "layer"]))
    if both.empty:
        raise NotTestable(f"needs {SUBSPACE_R2_MEASURE}, {BASIS_MEASURE} and the {ceiling_name} "
                          "for the same widths and layers")
    both["value"] = both["value_r2"] - both["value_corr"] ** 2
    per_pair = both.groupby(PAIR)[["value", "value_r2", "value_ceiling"]].mean()
    gap = Estimate.of(per_pair["value"])
    fraction = Estimate.of(per_pair["value_r2"] / per_pair["value_ceiling"])
    v_frac, why_frac = verdict_above(fraction, LI_SUBSPACE_R2_FRACTION)
    v_gap, why_gap = verdict_above(gap, LI_SUBSPACE_GAP_MIN)
    verdict = SUPPORTED if v_frac == v_gap == SUPPORTED else NOT_SUPPORTED
    return Outcome(gap, verdict, f"linear-map R² as a fraction of the {ceiling_name}: {why_frac}; "
                   f"R² minus one-to-one r̄²: {why_gap}",
                   f"linear-map R² {Estimate.of(per_pair['value_r2'])}; {ceiling_name} R² "
                   f"{_num(float(ceiling['value'].mean()))}; one-to-one r̄ "
                   f"{Estimate.of(pair_means(both, value='value_corr')['value'])}",
                   reference=f"map R² {Estimate.of(per_pair['value_r2'])} = {fraction} of the {ceiling_name}'s")


# --------------------------------------------------------------------------- Kornblith et al. 2019

def kornblith_grounding(tables: Tables, dataset: str, arch: str) -> Outcome:
    """Kornblith et al.: for each layer of net A the most similar layer of net B (linear CKA)
    is the same layer.

    From ``cka_layers.csv`` (layer × layer linear CKA between two seeds; cross-seed,
    frozen_k = 0 rows): per seed pair and width, the fraction of layers — of A against all
    of B's, and of B against all of A's — whose most similar layer is the corresponding
    one. The layer table holds one seed pair per cell, so the interval is over
    (seed pair, width) units. Rule: :func:`verdict_above` 0.9 (the paper: 99.3 %).
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
    est = Estimate.of([float(np.mean(v)) for v in hits.values()])
    verdict, reason = verdict_above(est, KORNBLITH_GROUNDING_MIN)
    return Outcome(est, verdict, reason, f"{sum(len(v) for v in hits.values())} layer identifications")


def kornblith_cka_over_cca(tables: Tables, dataset: str, arch: str) -> Outcome:
    """Kornblith et al. (Table 2): linear CKA identifies corresponding layers better than the CCA
    family (CCA ρ̄, R²_CCA, SVCCA, PWCCA: 1–15 % against 99.3 %).

    From ``cka_layers.csv`` (cross-seed, frozen_k = 0): per (seed pair, width), the fraction of
    layer identifications (both directions, :func:`convergent.figures.grounding.identified`)
    that linear CKA gets right minus the mean of the four CCA measures' fractions, **among the
    layers every one of the five measures can compare** (candidates and queries alike). The
    confound this guards against: CCA is unavailable (NaN) where a layer has more units than
    samples; counting those as failures, or letting CKA choose among layers CCA never saw,
    would credit CKA with CCA's missing values.
    Rule: :func:`verdict_above` 0.
    """
    from convergent.figures.grounding import CCA_FAMILY, comparable_layers, identification_matrix, identified

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
    for _, g in c.groupby(PAIR + ["width"]):
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
        diffs.append(frac["cka_linear"] - float(np.mean([frac[m] for m in CCA_FAMILY])))
    if not diffs:
        raise NotTestable("fewer than 2 layers of this cell are comparable by every measure (the CCA family is "
                          "undefined on layers with more units than samples: d1 + d2 > n - 1); raise cka_layers "
                          "max_samples or use the pool view")
    est = Estimate.of(diffs)
    verdict, reason = verdict_above(est, KORNBLITH_CKA_OVER_CCA_MIN)
    return Outcome(est, verdict, reason, f"{used} of {total} identifications defined for all five measures; "
                   "mean fractions " + ", ".join(f"{m}: {_num(float(np.mean(v)))}" for m, v in per_measure.items()))


def _width_slope(tables: Tables, dataset: str, arch: str, rows: pd.DataFrame, measure: str
                 ) -> tuple[Estimate, pd.DataFrame, str]:
    """Per-seed-pair slope of ``value`` (mean over layers) per doubling of width, on the
    layers present at every width (:func:`like_for_like`). Needs ≥ 2 widths.
    Returns (slope estimate, rows used, like-for-like note)."""
    gone = missing_levels(tables, dataset, arch, measure, rows, "width", 2, "≥ 2 widths")
    rows, note = like_for_like(rows, "width", "layer", measure, unavailable_notes(tables, dataset, arch, measure))
    note = "; ".join(n for n in (gone, note) if n)
    return Estimate.of(per_pair_slope(_with_log2_width(rows), "log2_width")), rows, note


def kornblith_width(tables: Tables, dataset: str, arch: str) -> Outcome:
    """Kornblith et al.: cross-seed CKA rises (toward 1) with width.

    Per seed pair (cross, frozen_k = 0): the least-squares slope of linear CKA (mean over
    the layers present at every width) on log2(width), i.e. the change per doubling of
    width. Needs ≥ 2 widths. Rule: :func:`verdict_above` 0.
    """
    est, rows, note = _width_slope(tables, dataset, arch, measure_rows(tables, dataset, arch, "cka_linear"),
                                   "cka_linear")
    verdict, reason = verdict_above(est, 0.0)
    by_width = pair_means(rows, ["width"]).groupby("width")["value"].mean()
    return Outcome(est, verdict, reason, "mean CKA by width: " + ", ".join(
        f"{w}: {_num(v)}" for w, v in by_width.items()) + (f"; {note}" if note else ""))


# --------------------------------------------------------------------------- Wang et al. 2018

def _subspace_over_eps(tables: Tables, dataset: str, arch: str) -> pd.DataFrame:
    rows = measure_rows(tables, dataset, arch, "subspace_similarity")
    return rows.groupby(PAIR + ["width", "layer", "layer_index"], as_index=False)["value"].mean()


def _depth_slope(rows: pd.DataFrame, verdict: Callable[[Estimate, float], tuple[str, str]],
                 what: str, measure: str = "", why_missing: str = "", gone: str = "") -> Outcome:
    """Outcome of a per-seed-pair slope of ``value`` on ``layer_index`` judged by ``verdict``
    against 0, with the mean ``what`` per layer as detail. Needs ≥ 2 layers. Only the
    widths at which every layer is present are used (:func:`like_for_like`); ``gone`` names
    layers without any value."""
    _require_levels(rows, "layer_index", 2, "≥ 2 layers")
    rows, note = like_for_like(rows, "layer_index", "width", measure or what, why_missing)
    note = "; ".join(n for n in (gone, note) if n)
    est = Estimate.of(per_pair_slope(rows, "layer_index"))
    label, reason = verdict(est, 0.0)
    by_layer = pair_means(rows, ["layer_index"]).groupby("layer_index")["value"].mean()
    return Outcome(est, label, reason, f"mean {what} by layer: " + ", ".join(
        f"{i}: {_num(v)}" for i, v in by_layer.items()) + (f"; {note}" if note else ""))


def wang_depth(tables: Tables, dataset: str, arch: str) -> Outcome:
    """Wang et al.: representations are less similar deeper.

    Per seed pair (cross, frozen_k = 0): the slope of the maximum-match subspace
    similarity (mean over the configured ε grid and over widths) on the layer's depth
    index. Needs ≥ 2 layers. Rule: :func:`verdict_below` 0.
    """
    rows = _subspace_over_eps(tables, dataset, arch)
    gone = missing_levels(tables, dataset, arch, "subspace_similarity", rows, "layer_index", 2, "≥ 2 layers")
    return _depth_slope(rows, verdict_below, "similarity", "subspace_similarity",
                        unavailable_notes(tables, dataset, arch, "subspace_similarity"), gone)


def wang_small_matches(tables: Tables, dataset: str, arch: str) -> Outcome:
    """Wang et al.: the maximum-match subsets are small in intermediate conv layers.

    Conv architectures only (the claim is about conv layers, whose neurons are channels
    seen at every position). Per seed pair (cross, frozen_k = 0): the maximum-match
    similarity averaged over the ε grid, widths and the intermediate layers (all but the
    first and last; all layers when there are fewer than three).
    Rule: :func:`verdict_below` 0.5 (fewer than half the neurons matched).
    """
    if arch in DENSE_ARCHS:
        raise NotTestable(f"needs a conv arch (cnn, resnet18, wrn); this cell is {arch}")
    rows = _subspace_over_eps(tables, dataset, arch)
    depths = np.sort(rows["layer_index"].unique())
    if depths.size >= 3:
        rows = rows[rows["layer_index"].between(depths[1], depths[-2])]
    est = Estimate.of(pair_means(rows)["value"])
    verdict, reason = verdict_below(est, WANG_SMALL_MATCH_MAX)
    return Outcome(est, verdict, reason, f"layers used: {', '.join(sorted(rows['layer'].unique()))}")


# --------------------------------------------------------------------------- Imani et al. 2022

def _alignment(tables: Tables, dataset: str, arch: str, control: str) -> pd.DataFrame:
    """``alignment_top_c`` averaged over the two networks of each pair."""
    sides = [measure_rows(tables, dataset, arch, f"alignment_top_c_{s}", control=control) for s in "ab"]
    return pd.concat(sides).groupby(PAIR + ["width", "layer", "layer_index"], as_index=False)["value"].mean()


def imani_depth(tables: Tables, dataset: str, arch: str) -> Outcome:
    """Imani et al.: alignment is higher in layers closer to the output.

    Per seed pair (cross, frozen_k = 0): the slope of the target alignment of the top-c
    directions (``alignment_top_c``, both networks averaged, mean over widths) on the
    layer's depth index. Needs ≥ 2 layers. Rule: :func:`verdict_above` 0.
    """
    rows = _alignment(tables, dataset, arch, "cross")
    gone = missing_levels(tables, dataset, arch, "alignment_top_c_a", rows, "layer_index", 2, "≥ 2 layers")
    return _depth_slope(rows, verdict_above, "alignment", "alignment_top_c",
                        unavailable_notes(tables, dataset, arch, "alignment_top_c_a"), gone)


def imani_emerges(tables: Tables, dataset: str, arch: str) -> Outcome:
    """Imani et al.: alignment emerges with training.

    Per seed pair (frozen_k = 0): ``alignment_top_c`` of the trained networks (cross
    control) minus that of the same seeds' untrained networks (floor control), averaged
    over widths and layers. Needs the floor control. Rule: :func:`verdict_above` 0.
    """
    trained = _alignment(tables, dataset, arch, "cross")
    untrained = _alignment(tables, dataset, arch, "floor")
    keys = PAIR + ["width", "layer"]
    both = trained.merge(untrained[keys + ["value"]], on=keys, suffixes=("_trained", "_untrained"))
    if both.empty:
        raise NotTestable("needs floor pairs with the same seeds as the cross pairs")
    return _positive_difference(both, "trained", "untrained", "trained {}; untrained {}")


def _positive_difference(both: pd.DataFrame, left: str, right: str, detail: str) -> Outcome:
    """Outcome of "``value_<left>`` exceeds ``value_<right>``" on merged rows: the per-seed-pair
    mean difference, :func:`verdict_above` 0, and ``detail`` filled with both sides' estimates."""
    both = both.assign(value=both[f"value_{left}"] - both[f"value_{right}"])
    est = Estimate.of(pair_means(both)["value"])
    verdict, reason = verdict_above(est, 0.0)
    sides = (Estimate.of(pair_means(both, value=f"value_{side}")["value"]) for side in (left, right))
    return Outcome(est, verdict, reason, detail.format(*sides))


# --------------------------------------------------------------------------- Brown et al. 2023

def brown_privileged_basis(tables: Tables, dataset: str, arch: str) -> Outcome:
    """Brown et al. (a): a ReLU network's basis is privileged, a linear network's is not.

    From ``rotation.csv``: for each (reference seed, width, layer), the drop of retrained
    test accuracy from the identity (strength 0) to the strongest rotation, ReLU network
    minus linear control. The rotation test runs on the reference seed only, so the
    interval is over (seed, width, layer) cells, not seed pairs. Needs ≥ 2 strengths
    including 0 and the linear control. Rule: :func:`verdict_above` 0.
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
    diff = drop[False] - drop[True]
    est = Estimate.of(diff)
    verdict, reason = verdict_above(est, 0.0)
    return Outcome(est, verdict, reason,
                   f"retrained-accuracy drop at strength {top:g}: ReLU {Estimate.of(drop[False])}, "
                   f"linear {Estimate.of(drop[True])}")


def brown_no_unique_basis(tables: Tables, dataset: str, arch: str) -> Outcome:
    """Brown et al. (b): different seeds do not converge to a unique basis, even when wide.

    At the widest width (frozen_k = 0): the data-order ceiling's basis correlation
    (``hungarian_mean_corr_cv`` of the reference network against the same initial weights
    trained in another minibatch order: what SGD noise alone leaves) minus the cross-seed
    basis correlation, over the layers both have. The interval resamples cross-seed pairs
    and data-order pairs independently. Needs controls.data_order (the self pair's held-out
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
    ceiling = pair_means(order_w)["value"]
    crossing = pair_means(cross_w)["value"]
    extra = ""
    try:
        floor = measure_rows(tables, dataset, arch, BASIS_MEASURE, control="floor")
    except NotTestable:
        floor = None   # no floor control: the headroom check is skipped, and the detail says so
    floor = None if floor is None else floor[(floor["width"] == widest) & floor["layer"].isin(layers)]
    if floor is not None and not floor.empty:
        f_est, c_est = Estimate.of(pair_means(floor)["value"]), Estimate.of(ceiling)
        if not c_est.ci_low > f_est.ci_high:
            raise NotTestable(f"the data-order ceiling {c_est} does not lie above the floor (untrained "
                              f"pairs) {f_est} at width {widest}: SGD noise alone scrambles the basis, "
                              "so the cross-seed gap has no headroom to mean anything")
        extra = f"; floor (untrained) {f_est}"
    else:
        extra = "; no floor pairs to check the ceiling's headroom against"
    est = Estimate.difference(ceiling, crossing)
    verdict, reason = verdict_above(est, BROWN_CEILING_GAP_MIN)
    by_width = []
    for w in sorted(set(cross["width"]) & set(order["width"])):
        c, o = cross[cross["width"] == w], order[order["width"] == w]
        common = set(c["layer"]) & set(o["layer"])
        if common:
            gap = o[o["layer"].isin(common)]["value"].mean() - c[c["layer"].isin(common)]["value"].mean()
            by_width.append(f"{w}: {_num(float(gap))}")
    return Outcome(est, verdict, f"data-order ceiling minus cross-seed basis correlation at width {widest}: {reason}",
                   reference=f"data-order ceiling {Estimate.of(ceiling)}, cross-seed {Estimate.of(crossing)}",
                   detail=f"width {widest}: cross-seed {Estimate.of(crossing)}, data-order ceiling {Estimate.of(ceiling)} "
                   f"({len(layers)} layers){extra}; gap by width: {', '.join(by_width)}")


def brown_freezing(tables: Tables, dataset: str, arch: str) -> Outcome:
    """Brown et al. (c): freezing the first k layers identically raises basis correlation.

    Per seed pair: basis correlation (``hungarian_mean_corr_cv``) with frozen_k = k > 0
    minus frozen_k = 0, same width and layer, over the layers *above* the frozen ones
    (the frozen layers are identical, correlation 1, by construction), averaged over
    every k > 0, width and such layer. Needs frozen_k > 0. Rule: :func:`verdict_above` 0
    (the paper's "markedly" is not quantified, so only the direction is tested).
    """
    rows = measure_rows(tables, dataset, arch, BASIS_MEASURE, frozen_k=None)
    ks = sorted(int(k) for k in rows["frozen_k"].unique() if k > 0)
    if not ks:
        raise NotTestable("needs frozen_k > 0 in the sweep")
    if not (rows["frozen_k"] == 0).any():
        raise NotTestable("needs frozen_k = 0 in the sweep (the unfrozen baseline)")
    keys = PAIR + ["width", "layer", "layer_index"]
    base = rows[rows["frozen_k"] == 0][keys + ["value"]]
    frozen = rows[(rows["frozen_k"] > 0) & (rows["layer_index"] > rows["frozen_k"])]
    if frozen.empty:
        raise NotTestable(f"needs a layer above the frozen ones (frozen_k = {ks} covers every layer)")
    both = frozen[keys + ["frozen_k", "value"]].merge(base, on=keys, suffixes=("_frozen", "_free"))
    if both.empty:
        raise NotTestable("needs frozen and unfrozen runs with the same seeds and widths")
    return _positive_difference(both, "frozen", "free", f"frozen_k {ks}: frozen {{}} vs free {{}} (layers above k)")


def brown_lmc_width(tables: Tables, dataset: str, arch: str) -> Outcome:
    """Brown et al. (d): linear mode connectivity improves with width, but not because
    basis correlation improves.

    Per seed pair (cross, frozen_k = 0): the slope per doubling of width of the test-error
    barrier of plain interpolation (``lmc.csv``, variant ``naive``), and of the basis
    correlation (``hungarian_mean_corr_cv``, mean over the layers present at every width).
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
    basis, _, note = _width_slope(tables, dataset, arch, measure_rows(tables, dataset, arch, BASIS_MEASURE),
                                  BASIS_MEASURE)
    verdict, reason = verdict_lmc_not_basis(barrier, basis)
    by_width = lmc.groupby("width")["error_barrier"].mean()
    detail = (f"basis-correlation slope per doubling {basis}; mean test-error barrier by width: "
              + ", ".join(f"{w}: {_num(v)}" for w, v in by_width.items()))
    order = lmc_all[lmc_all["control"] == "data_order"]
    if not order.empty:
        detail += ("; data-order (SGD-noise) barrier by width: "
                   + ", ".join(f"{w}: {_num(v)}" for w, v in order.groupby("width")["error_barrier"].mean().items()))
    return Outcome(barrier, verdict, reason, detail + (f"; {note}" if note else ""))


# --------------------------------------------------------------------------- the registry

FINDINGS: tuple[Finding, ...] = (
    Finding("li_reliable", "Li et al. 2016", "some units are learned reliably, others not",
            "top − bottom decile of the sorted one-to-one matched correlation",
            f"top decile > {LI_TOP_MIN} and bottom decile < {LI_BOTTOM_MAX} (whole intervals)",
            "seed pairs", li_reliable_units,
            f"a top decile at or below {LI_TOP_MIN} (no unit matched reliably) or a bottom decile at or above "
            f"{LI_BOTTOM_MAX} (every unit matched)"),
    Finding("li_subspace", "Li et al. 2016", "units span shared subspaces while the basis is not shared",
            "held-out R² of the L1 linear map A→B (α chosen on the other fold) minus held-out one-to-one r̄²",
            f"R² / ceiling R² above {LI_SUBSPACE_R2_FRACTION} (data-order ceiling; self ceiling without it) and "
            f"R² − r̄² above {LI_SUBSPACE_GAP_MIN} (whole intervals)", "seed pairs", li_shared_subspace,
            f"a linear map below {LI_SUBSPACE_R2_FRACTION} of the ceiling's R² (no shared subspace: e.g. 20 % "
            f"shared variance), or one-to-one matching within {LI_SUBSPACE_GAP_MIN} of the map (a shared basis: "
            "e.g. a permuted copy)"),
    Finding("kornblith_grounding", "Kornblith et al. 2019",
            "linear CKA identifies the corresponding layer of another seed",
            "fraction of layers whose most CKA-similar layer in the other net is the same layer",
            f"interval above {KORNBLITH_GROUNDING_MIN}", "seed pair × width", kornblith_grounding,
            f"at most {KORNBLITH_GROUNDING_MIN:.0%} of layers identified (another layer of B more CKA-similar)"),
    Finding("kornblith_cca", "Kornblith et al. 2019",
            "linear CKA identifies corresponding layers better than the CCA family",
            "layer-identification fraction, linear CKA minus the mean of CCA ρ̄, R²_CCA, SVCCA and PWCCA, "
            "on the identifications all five define",
            f"interval above {KORNBLITH_CKA_OVER_CCA_MIN:g}", "seed pair × width", kornblith_cka_over_cca,
            "the CCA family identifying layers as often as linear CKA (difference interval reaching 0)"),
    Finding("kornblith_width", "Kornblith et al. 2019", "cross-seed CKA rises with width",
            "slope of linear CKA per doubling of width (layers present at every width)", "interval above 0",
            "seed pairs", kornblith_width, "a CKA slope per doubling of width whose interval reaches 0 or below"),
    Finding("wang_depth", "Wang et al. 2018", "representations are less similar deeper",
            "slope of maximum-match similarity (mean over ε) per layer (widths present at every layer)",
            "interval below 0", "seed pairs", wang_depth,
            "a similarity slope per layer whose interval reaches 0 or above"),
    Finding("wang_small", "Wang et al. 2018", "maximum matches are small in intermediate conv layers",
            "maximum-match similarity (mean over ε) in intermediate layers",
            f"interval below {WANG_SMALL_MATCH_MAX}", "seed pairs", wang_small_matches,
            f"half or more of the neurons in a maximum match (interval reaching {WANG_SMALL_MATCH_MAX})"),
    Finding("imani_depth", "Imani et al. 2022", "alignment is higher in layers closer to the output",
            "slope of top-c target alignment per layer (widths present at every layer)", "interval above 0",
            "seed pairs", imani_depth, "an alignment slope per layer whose interval reaches 0 or below"),
    Finding("imani_emerges", "Imani et al. 2022", "alignment emerges with training",
            "top-c target alignment, trained minus untrained", "interval above 0", "seed pairs", imani_emerges,
            "untrained networks as aligned as trained ones (difference interval reaching 0)"),
    Finding("brown_a", "Brown et al. 2023", "(a) a ReLU network's basis is privileged, a linear one's is not",
            "retrained-accuracy drop under the strongest rotation, ReLU minus linear", "interval above 0",
            "reference seed × width × layer", brown_privileged_basis,
            "a linear control that loses as much accuracy under rotation as the ReLU network"),
    Finding("brown_b", "Brown et al. 2023", "(b) seeds do not converge to a unique basis, even when wide",
            "data-order ceiling minus cross-seed basis correlation at the widest width",
            f"interval above {BROWN_CEILING_GAP_MIN}; ceiling above the floor", "seed pairs",
            brown_no_unique_basis,
            f"cross-seed basis correlation within {BROWN_CEILING_GAP_MIN} of what SGD noise alone leaves "
            "(same init, other minibatch order) at the widest width: seeds would converge to one basis"),
    Finding("brown_c", "Brown et al. 2023", "(c) freezing the first layers identically raises basis correlation",
            "basis correlation above the frozen layers, frozen_k > 0 minus frozen_k = 0", "interval above 0",
            "seed pairs", brown_freezing,
            "layers above the frozen ones no more correlated than in unfrozen pairs (interval reaching 0)"),
    Finding("brown_d", "Brown et al. 2023", "(d) LMC improves with width, but not because basis correlation does",
            "slope of the plain-interpolation test-error barrier per doubling of width",
            f"barrier slope below 0 and basis-correlation slope below {BROWN_BASIS_RISE_MAX} per doubling",
            "seed pairs", brown_lmc_width,
            f"a barrier that does not fall with width, or a basis correlation rising by {BROWN_BASIS_RISE_MAX} "
            "or more per doubling alongside it"),
)

#: Claims of SPEC.md that no statistic here tests, with the reason (listed in findings.md).
NOT_OPERATIONALISED: tuple[tuple[str, str, str], ...] = (
    ("Li et al. 2016", "codes are a mix of local and slightly distributed",
     "qualitative; the sparse-prediction non-zero counts (sparse_nonzero) show it per layer but no threshold "
     "for 'slightly distributed' is defined"),
    ("Wang et al. 2018", "simple (minimal) matches are small",
     "the minimal-match sizes are in measures.csv (minimal_match_size_*) but the paper gives no threshold"),
    ("Imani et al. 2022", "alignment emerges across architectures and optimisers",
     "needs a sweep over optimisers; across architectures: compare imani_emerges between arch cells"),
)

COLUMNS = ["finding", "paper", "claim", "dataset", "arch", "statistic", "value", "ci_low", "ci_high", "n",
           "resampled", "verdict", "reason", "rule", "detail", "flip", "reference"]


# --------------------------------------------------------------------------- evaluation

def cells(tables: Tables) -> list[tuple[str, str]]:
    """The (dataset, arch) cells present in any table, sorted."""
    found: set[tuple[str, str]] = set()
    for name in TABLE_NAMES:
        frame = getattr(tables, name)
        if frame is not None and {"dataset", "arch"} <= set(frame.columns):
            found |= set(map(tuple, frame[["dataset", "arch"]].astype(str).drop_duplicates().to_numpy()))
    return sorted(found)


def evaluate(finding: Finding, tables: Tables, dataset: str, arch: str) -> dict:
    """One row of the findings table: the finding evaluated on one cell."""
    row = {"finding": finding.id, "paper": finding.paper, "claim": finding.claim, "dataset": dataset,
           "arch": arch, "statistic": finding.statistic, "value": np.nan, "ci_low": np.nan, "ci_high": np.nan,
           "n": 0, "resampled": finding.unit, "rule": finding.rule, "detail": "", "flip": finding.flip,
           "reference": ""}
    try:
        out = finding.evaluate(tables, dataset, arch)
    except NotTestable as err:
        return {**row, "verdict": NOT_TESTABLE, "reason": str(err)}
    reason = out.reason
    if out.estimate.degenerate:
        reason += (f"; only one resampling unit ({finding.unit}): the interval is degenerate "
                   "(no spread to resample), so the verdict rests on a single value")
    return {**row, "value": out.estimate.value, "ci_low": out.estimate.ci_low, "ci_high": out.estimate.ci_high,
            "n": out.estimate.n, "verdict": out.verdict, "reason": reason, "detail": out.detail,
            "reference": out.reference}


#: run coordinates shared by runs.csv and the per-pair tables
RUN_KEYS = ["dataset", "arch", "width", "frozen_k"]


def exclude_at_chance(tables: Tables) -> tuple[Tables, str]:
    """``tables`` without the trained-network rows of runs flagged ``at_chance`` in runs.csv, and a
    sentence saying what was left out ("" when nothing was).

    A network at chance accuracy did not learn; its representation says nothing about what
    training converges to, so every pair it is in (cross, ceiling; LMC; cross-layer CKA) and its
    rotation rows are dropped. Floor pairs compare untrained networks and stay.
    """
    runs = tables.runs
    if runs is None or "at_chance" not in runs or not runs["at_chance"].astype(str).str.lower().eq("true").any():
        return tables, ""
    bad = runs[runs["at_chance"].astype(str).str.lower().eq("true")]
    # a run is (cell, seed, order seed): a data-order run s{r}o{o} at chance takes out its own
    # data-order pair, not every pair of the reference seed r
    keys = {(*r[:-2], r[-2], r[-1]) for r in _run_keys(bad, "").to_numpy()}

    def keep(frame: pd.DataFrame | None, trained_only: bool) -> pd.DataFrame | None:
        if frame is None or not set(RUN_KEYS) <= set(frame.columns):
            return frame
        hit = np.zeros(len(frame), dtype=bool)
        for side in [s for s in ("", "_a", "_b") if f"seed{s}" in frame]:
            hit |= np.array([tuple(r) in keys for r in _run_keys(frame, side).to_numpy()], dtype=bool)
        if trained_only and "control" in frame:
            hit &= frame["control"] != "floor"
        return frame[~hit]

    out = Tables(runs=runs, measures=keep(tables.measures, True), lmc=keep(tables.lmc, True),
                 rotation=keep(tables.rotation, True), cka_layers=keep(tables.cka_layers, True))
    names = ", ".join(f"{d}/{a} w{w} f{k} s{s}" + (f"o{o}" if o != s else "") for d, a, w, k, s, o in sorted(keys))
    return out, (f"{len(keys)} network(s) at chance test accuracy (runs.csv at_chance: {names}) are left out "
                 "of every finding: their cross and ceiling pairs, LMC pairs, cross-layer CKA and rotation rows.")


def _run_keys(frame: pd.DataFrame, side: str) -> pd.DataFrame:
    """The run of each row as strings: :data:`RUN_KEYS`, ``seed{side}`` and ``order_seed{side}``
    (the seed where the table has no order seed: an ordinary run's order is its seed)."""
    seed = frame[f"seed{side}"]
    order = frame[f"order_seed{side}"] if f"order_seed{side}" in frame else seed
    out = frame[RUN_KEYS].astype(str).assign(seed=seed.astype(str), order_seed=order.astype(str))
    return out


def findings_table(tables: Tables, findings: Sequence[Finding] = FINDINGS) -> pd.DataFrame:
    """Every finding on every (dataset, arch) cell; one row each, columns :data:`COLUMNS`.

    With no table at all there is no cell; each finding then gets one row with empty
    dataset and arch, not testable. Networks at chance accuracy are left out
    (:func:`exclude_at_chance`).
    """
    tables, _ = exclude_at_chance(tables)
    cell_list = cells(tables) or [("", "")]
    rows = [evaluate(f, tables, d, a) for f in findings for d, a in cell_list]
    return pd.DataFrame(rows, columns=COLUMNS)


# --------------------------------------------------------------------------- rendering

INTRO = (
    "Each statistic is computed per **seed pair** (two networks that differ only in their seed) and "
    "reported as the mean over seed pairs with a 95 % percentile bootstrap interval over seed pairs "
    "(2,000 resamples). Pairs that share a seed are not independent, so with few seeds the interval is "
    "optimistic; with one pair it collapses to the value. Two statistics resample other units, named in "
    "their row: the rotation test (brown_a) runs on the reference network only, so its interval is over "
    "widths × layers; the layer × layer tables (kornblith_grounding, kornblith_cca) hold one seed pair per cell, "
    "so their intervals are over seed pair × width. **supported**: the whole interval lies on the side "
    "of the threshold the paper predicts; **not supported**: it does not (*contradicted* when it lies wholly "
    "on the other side, *inconclusive* when it contains the threshold); **not testable**: this sweep lacks "
    "what the statistic needs, and the reason says what. Thresholds and rules are in `convergent/findings.py`."
)


def _value_text(row: Mapping) -> str:
    if row["verdict"] == NOT_TESTABLE:
        return "—"
    text = f"{_num(row['value'])} [{_num(row['ci_low'])}, {_num(row['ci_high'])}]"
    return text + (f" ({row['reference']})" if row.get("reference") else "")


def _sweep_text(tables: Tables) -> str:
    runs = tables.runs
    if runs is None or runs.empty:
        return "No runs table (results/summary/runs.csv) was given."
    parts = [f"{len(runs)} trained networks"]
    for col in ("dataset", "arch", "width", "frozen_k", "seed"):
        if col in runs:
            parts.append(f"{col} ∈ {{{', '.join(map(str, sorted(runs[col].unique())))}}}")
    if "order_seed" in runs and (runs["order_seed"] != runs["seed"]).any():
        parts.append(f"{int((runs['order_seed'] != runs['seed']).sum())} of them data-order runs (the reference "
                     "seed's initial weights, another seed's minibatch order)")
    if "test_acc" in runs:
        parts.append(f"test accuracy {runs['test_acc'].min():.3f}–{runs['test_acc'].max():.3f}")
    excluded = exclude_at_chance(tables)[1]
    return "Sweep: " + "; ".join(parts) + "." + (f" Excluded: {excluded}" if excluded else "")


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(table: pd.DataFrame, tables: Tables | None = None) -> str:
    """``findings.md``: a summary table, then one paragraph per finding and cell."""
    lines = ["# Replication summary", "", _sweep_text(tables or Tables()), "", INTRO, "",
             "| Finding | Paper | Claim | Cell | Statistic | Value [95 % CI] | n | Verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        cell = f"{r['dataset']}/{r['arch']}" if r["dataset"] else "—"
        lines.append("| " + " | ".join(_md_cell(x) for x in (
            r["finding"], r["paper"], r["claim"], cell, r["statistic"], _value_text(r),
            r["n"] if r["verdict"] != NOT_TESTABLE else "—", f"**{r['verdict']}**")) + " |")
    lines += ["", "## Findings", ""]
    docs = {f.id: f for f in FINDINGS}
    for fid, group in table.groupby("finding", sort=False):
        first = group.iloc[0]
        lines += [f"### {fid}: {first['paper']} — {first['claim']}", ""]
        f = docs.get(fid)
        if f is not None:
            lines += [f"*Statistic*: {f.statistic} (interval over {f.unit}). *Rule*: {f.rule}.", ""]
        for _, r in group.iterrows():
            cell = f"{r['dataset']}/{r['arch']}" if r["dataset"] else "(no cell)"
            if r["verdict"] == NOT_TESTABLE:
                text = f"**{cell}: not testable** — {r['reason']}."
            else:
                text = (f"**{cell}: {r['verdict']}.** Value {_value_text(r)} over n = {r['n']} "
                        f"({r['resampled']}); {r['reason']}.")
                if r["detail"]:
                    text += f" Detail: {r['detail']}."
                if r.get("flip"):   # the same sentence whichever way it came out: what separates the two
                    text += f" *What would turn it*: not supported with {r['flip']}; supported otherwise."
            lines += [text, ""]
    lines += ["## Claims not operationalised here", ""]
    lines += [f"- {paper}: {claim} — {why}." for paper, claim, why in NOT_OPERATIONALISED]
    return "\n".join(lines) + "\n"


def to_html(table: pd.DataFrame, tables: Tables | None = None) -> str:
    """``findings.html``: the same content as :func:`to_markdown` for the Snakemake report
    (which shows HTML inline but offers markdown only as a download)."""
    esc = html.escape
    rows = []
    for _, r in table.iterrows():
        cell = f"{r['dataset']}/{r['arch']}" if r["dataset"] else "—"
        why = r["reason"] + (f". Detail: {r['detail']}" if r["detail"] else "")
        rows.append("<tr>" + "".join(f"<td>{esc(str(x))}</td>" for x in (
            r["finding"], r["paper"], r["claim"], cell, r["statistic"], _value_text(r),
            r["n"] if r["verdict"] != NOT_TESTABLE else "—")) +
            f"<td class='{r['verdict'].replace(' ', '-')}'><b>{esc(r['verdict'])}</b></td><td>{esc(why)}</td></tr>")
    untested = "".join(f"<li>{esc(p)}: {esc(c)} — {esc(w)}.</li>" for p, c, w in NOT_OPERATIONALISED)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Replication summary</title><style>"
        "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;font-size:90%}"
        "td,th{border:1px solid #ccc;padding:4px;vertical-align:top}th{background:#eee}"
        ".supported{background:#d9f2d9}.not-supported{background:#f8d7d7}.not-testable{background:#eee}"
        "</style></head><body><h1>Replication summary</h1>"
        f"<p>{esc(_sweep_text(tables or Tables()))}</p><p>{esc(re.sub(r'[*`]', '', INTRO))}</p>"
        "<table><tr><th>Finding</th><th>Paper</th><th>Claim</th><th>Cell</th><th>Statistic</th>"
        "<th>Value [95 % CI]</th><th>n</th><th>Verdict</th><th>Why</th></tr>" + "".join(rows) +
        f"</table><h2>Claims not operationalised here</h2><ul>{untested}</ul></body></html>\n")
