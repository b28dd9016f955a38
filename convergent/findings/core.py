"""The shared ground of the findings: tables, estimates, verdict rules and row selection.

A finding's module (``li``, ``kornblith``, ``wang``, ``imani``, ``brown``) reads rows with
:func:`measure_rows`, averages them per unit (:func:`pair_means`, :func:`per_unit_slope`; the unit is
a seed pair, :data:`PAIR`, or a network, :data:`NETWORK`), and turns an :class:`Estimate` into a verdict with
:func:`verdict_above` / :func:`verdict_below`. Every aggregation here is linear, and carries the
rows' example influences (columns ``inf_0 … inf_{B−1}``, from measures.csv's ``jk_*``) along with
the value, so the Multi-Bootstrap (:mod:`convergent.stats`) can resample examples as well as seeds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from convergent.io import read_table
from convergent.stats import (MIN_SEEDS, Combine, Interval, Units, difference, influence_columns,
                              jackknife_influence, jk_columns, multi_bootstrap, seeds_needed, units_of)

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
NOT_TESTABLE = "not testable"

#: the summary tables a finding may read, by name; file ``results/summary/<name>.csv``
TABLE_NAMES = ("runs", "measures", "lmc", "rotation", "cka_layers")
#: a pair's identity: its two seeds and the seeds of their minibatch order (data-order control)
PAIR = ["seed_a", "seed_b", "order_seed_a", "order_seed_b"]
#: a network's identity: its seed and the seed of its minibatch order
NETWORK = ["seed", "order_seed"]
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
    """A statistic with its 95 % interval over seeds (and example blocks, where measured).

    ``n``: units in the statistic's largest group (seed pairs, networks, ...); ``seeds``: the
    independent seeds resampled; ``se``: the resampling standard error (NaN: none);
    ``blocks``: example blocks resampled (0: examples contributed nothing); ``enough``: whether
    the seeds support an interval at all (:data:`convergent.stats.MIN_SEEDS`). Built by
    :meth:`of` and :meth:`difference` from :func:`convergent.stats.multi_bootstrap`.
    """

    value: float
    ci_low: float
    ci_high: float
    n: int
    seeds: int = 0
    se: float = float("nan")
    blocks: int = 0
    enough: bool = True

    @classmethod
    def from_interval(cls, iv: Interval) -> Estimate:
        return cls(iv.value, iv.ci_low, iv.ci_high, iv.units, iv.seeds, iv.se, iv.blocks, iv.enough)

    @classmethod
    def of(cls, units: pd.DataFrame, value: str = "value") -> Estimate:
        """Mean of ``value`` over the rows of ``units`` (one per seed pair or network, with its seed
        columns and ``inf_*`` example influences), resampled over seeds and examples."""
        return cls.groups({"value": _units(units, value)})

    @classmethod
    def difference(cls, left: pd.DataFrame, right: pd.DataFrame, value: str = "value") -> Estimate:
        """mean(left) − mean(right), both groups' seeds drawn jointly (e.g. data-order pairs against
        cross-seed pairs: an order seed is also a seed of the cross pairs)."""
        return cls.groups({"left": _units(left, value), "right": _units(right, value)}, difference("left", "right"))

    @classmethod
    def groups(cls, groups: Mapping[str, Units], combine: Combine | None = None) -> Estimate:
        """:func:`convergent.stats.multi_bootstrap` of ``groups`` as an :class:`Estimate`."""
        if any(np.isfinite(g.values).sum() == 0 for g in groups.values()):
            raise NotTestable("no finite values of the statistic")
        return cls.from_interval(multi_bootstrap(groups, combine))

    @property
    def degenerate(self) -> bool:
        """No interval: too few seeds, or no spread to resample."""
        return not self.enough

    def needs(self, threshold: float) -> float:
        """Seeds a decisive verdict against ``threshold`` would need (:func:`convergent.stats.seeds_needed`)."""
        return seeds_needed(Interval(self.value, self.ci_low, self.ci_high, self.se, self.seeds, self.n), threshold)

    def __str__(self) -> str:
        if not self.enough:
            return f"{_num(self.value)} [no interval: {self.seeds} seeds]"
        return f"{_num(self.value)} [{_num(self.ci_low)}, {_num(self.ci_high)}]"


def _units(frame: pd.DataFrame, value: str) -> Units:
    """:class:`Units` of a per-unit frame whose example influences are those of ``value``."""
    frame = frame[np.isfinite(frame[value].to_numpy(dtype=np.float64))]
    if frame.empty:
        raise NotTestable("no finite values of the statistic")
    return units_of(_as_value(frame, value))


def _num(x: float) -> str:
    return "nan" if not np.isfinite(x) else f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def _too_few(est: Estimate) -> str:
    return (f"inconclusive: {est.seeds} seed{'s' if est.seeds != 1 else ''} cannot support an interval over seeds "
            f"(≥ {MIN_SEEDS} needed, with some spread between them); value {_num(est.value)}")


# --------------------------------------------------------------------------- verdict rules

def verdict_above(est: Estimate, threshold: float) -> tuple[str, str]:
    """Supported iff the whole interval lies above ``threshold`` (ci_low > threshold); inconclusive
    when the seeds cannot support an interval."""
    if not est.enough:
        return NOT_SUPPORTED, _too_few(est)
    if est.ci_low > threshold:
        return SUPPORTED, f"the 95 % interval {est} lies above {threshold:g}"
    if est.ci_high < threshold:
        return NOT_SUPPORTED, f"contradicted: the 95 % interval {est} lies below {threshold:g}"
    return NOT_SUPPORTED, f"inconclusive: the 95 % interval {est} contains {threshold:g}"


def verdict_below(est: Estimate, threshold: float) -> tuple[str, str]:
    """Supported iff the whole interval lies below ``threshold`` (ci_high < threshold); inconclusive
    when the seeds cannot support an interval."""
    if not est.enough:
        return NOT_SUPPORTED, _too_few(est)
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


#: where measures.csv has a chance level, the calibrated value: (value − chance) / (best − chance)
CALIBRATED = "calibrated"
#: why the held-out basis correlation needs no calibration where measures.csv has none
BASIS_FLAT_CHANCE = ("its chance level is 0 at every width and depth (units matched on one half of the images, "
                     "correlated on the other)")
#: the best value of the similarities the findings read (identical representations)
BEST = 1.0


def measure_rows(tables: Tables, dataset: str, arch: str, measure: str, *, control: str = "cross",
                 frozen_k: int | None = 0, parameter_value: float | None = None,
                 column: str = "value") -> pd.DataFrame:
    """Finite rows of one measure in one cell; :class:`NotTestable` says what is missing.

    ``column``: ``value`` or ``calibrated`` (see :func:`calibrated_rows`); it becomes the rows'
    ``value`` (the raw value is kept as ``raw``). The rows' block-jackknife replicates ``jk_*``
    become example influences ``inf_*`` (:func:`with_influence`)."""
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
    if column not in rows:
        raise NotTestable(f"needs column {column!r} in measures.csv")
    finite = rows[np.isfinite(rows[column].astype(float))]
    if finite.empty:
        notes = rows["note"].dropna().unique() if "note" in rows else []
        why = f" ({notes[0]})" if len(notes) else ""
        what = f"measure {measure!r}" + (f" (column {column!r})" if column != "value" else "")
        raise NotTestable(f"{what} is unavailable in every row{why}")
    return with_influence(finite, column)


def calibrated_rows(tables: Tables, dataset: str, arch: str, measure: str, *, flat_chance: str = "", **kw
                    ) -> tuple[pd.DataFrame, str]:
    """(rows, sentence) of ``measure`` read on its **calibrated** value, for findings that compare
    levels (widths, depths, frozen_k): raw similarity rises with width by chance alone (issue 25),
    calibration puts chance at 0 at every level. :class:`NotTestable` naming the missing column when
    measures.csv has no chance levels (a table from before them), unless ``flat_chance`` says why the
    raw measure's chance level does not move (then the raw rows, and that sentence)."""
    m = tables.require("measures")
    if CALIBRATED not in m or not np.isfinite(m.loc[m["measure"] == measure, CALIBRATED].astype(float)).any():
        if flat_chance:
            return measure_rows(tables, dataset, arch, measure, **kw), (
                f"read on raw {measure}: measures.csv has no chance levels (column {CALIBRATED!r}), and {flat_chance}")
        raise NotTestable(f"needs column {CALIBRATED!r} of measures.csv for {measure!r} (its chance level): a "
                          "comparison of levels on raw values would count chance's own rise with width or "
                          "depth as an effect")
    rows = measure_rows(tables, dataset, arch, measure, column=CALIBRATED, **kw)
    return rows, (f"read on calibrated {measure} ((value − chance) / (1 − chance), chance: the mean under "
                  "its null: rows, or for alignment labels, permuted), so chance is 0 at every level")


def with_influence(rows: pd.DataFrame, column: str = "value") -> pd.DataFrame:
    """``rows`` with ``value`` = ``rows[column]`` (the raw value kept as ``raw``) and the example
    influences ``inf_b = (B − 1)(mean_b jk_b − jk_b)`` of the block-jackknife replicates ``jk_*``
    (B = the number of such columns); rows without replicates get influence 0 (their examples
    are not resampled). For ``calibrated`` the influence is divided by (best − chance), best = 1:
    the calibrated value moves by the same amount over the same scale. No ``jk_*``: no ``inf_*``."""
    jk = jk_columns(rows)
    out = rows.drop(columns=jk).assign(raw=rows["value"], value=rows[column].astype(float))
    if len(jk) < 2:
        return out
    inf = jackknife_influence(rows[jk].to_numpy(dtype=np.float64))
    if column == CALIBRATED:   # calibrated = (v − chance) / (best − chance): the same move over that scale
        v, c = rows["value"].to_numpy(dtype=np.float64), rows[CALIBRATED].to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            chance = (rows["chance"].to_numpy(dtype=np.float64) if "chance" in rows
                      else (v - c * BEST) / (1 - c))   # solved from value and calibrated
            inf = inf / (BEST - chance)[:, None]
    inf = np.where(np.isfinite(inf).all(axis=1, keepdims=True), inf, 0.0)
    return out.assign(**{f"inf_{b}": inf[:, b] for b in range(len(jk))})


def examples_note(rows: pd.DataFrame) -> str:
    """Whether the rows' examples were resampled, for a detail."""
    cols = influence_columns(rows)
    if not cols:
        return "examples not resampled (measures.csv has no jk_* columns)"
    some = (rows[cols].to_numpy() != 0).any(axis=1)
    if not some.any():
        return "examples not resampled (no finite jk_* replicates)"
    return f"examples resampled over {len(cols)} blocks" + ("" if some.all() else
                                                          f" ({int((~some).sum())} rows without replicates)")


def _inf_of(frame: pd.DataFrame, value: str) -> list[str]:
    """The influence columns of ``value``: ``inf_b`` for ``value``, ``inf_<x>_b`` for ``value_<x>``."""
    prefix = "inf_" if value == "value" else f"inf_{value[6:]}_" if value.startswith("value_") else None
    if prefix is None:
        return []
    cols = [c for c in frame.columns if isinstance(c, str) and c.startswith(prefix) and c[len(prefix):].isdigit()]
    return sorted(cols, key=lambda c: int(c[len(prefix):]))


def _as_value(frame: pd.DataFrame, value: str) -> pd.DataFrame:
    """``frame`` with ``value`` and its influences renamed to ``value``, ``inf_b``."""
    if value == "value":
        return frame
    cols = _inf_of(frame, value)
    keep = [c for c in frame.columns if not (c == "value" or (isinstance(c, str) and re.fullmatch(r"inf_\d+", c)))]
    out = frame[keep].rename(columns={value: "value", **{c: f"inf_{c.rsplit('_', 1)[1]}" for c in cols}})
    return out


def suffixed(frame: pd.DataFrame, suffix: str, keys: Sequence[str]) -> pd.DataFrame:
    """``keys`` + ``value`` and its influences of ``frame``, renamed ``value_<suffix>``,
    ``inf_<suffix>_b``: ready to merge with another measure's."""
    cols = influence_columns(frame)
    return frame[list(keys) + ["value"] + cols].rename(
        columns={"value": f"value_{suffix}", **{c: f"inf_{suffix}_{c[4:]}" for c in cols}})


def combine_columns(frame: pd.DataFrame, value: np.ndarray, influence: np.ndarray | None) -> pd.DataFrame:
    """``frame`` with ``value`` and ``inf_*`` replaced (for a derived per-unit quantity; the caller
    gives its linearised influence)."""
    keep = [c for c in frame.columns if not (c == "value" or (isinstance(c, str) and re.fullmatch(r"inf_\d+", c)))]
    out = frame[keep].assign(value=value)
    if influence is not None and influence.shape[1]:
        out = out.assign(**{f"inf_{b}": influence[:, b] for b in range(influence.shape[1])})
    return out


def pair_means(frame: pd.DataFrame, by: Sequence[str] = (), value: str = "value", keys: Sequence[str] = PAIR
               ) -> pd.DataFrame:
    """Mean of ``value`` (and its example influences) per seed pair and ``by``; the result has a
    ``value`` column and ``inf_*``. ``keys``: the unit (:data:`PAIR`; :data:`NETWORK` for networks)."""
    frame = _as_value(frame, value)
    cols = ["value"] + influence_columns(frame)
    return frame.groupby(list(keys) + list(by), as_index=False)[cols].mean()


def per_unit_slope(frame: pd.DataFrame, x: str, keys: Sequence[str] = PAIR) -> pd.DataFrame:
    """Least-squares slope of ``value`` (and of each example influence: a slope is linear in the
    values) on ``x`` within each unit (rows averaged per x first). One row per unit: ``keys``,
    ``value``, ``inf_*``. Units seen at fewer than two distinct ``x`` have no slope and are dropped.
    """
    means = pair_means(frame, [x], keys=keys)
    cols = ["value"] + influence_columns(means)
    rows = []
    for key, g in means.groupby(list(keys)):
        xs = g[x].to_numpy(float)
        if np.unique(xs).size < 2:
            continue
        xc = (xs - xs.mean()) / ((xs - xs.mean()) ** 2).sum()
        rows.append({**dict(zip(keys, key)), **dict(zip(cols, xc @ g[cols].to_numpy(float)))})
    return pd.DataFrame(rows, columns=list(keys) + cols)


def per_pair_slope(frame: pd.DataFrame, x: str) -> pd.DataFrame:
    """:func:`per_unit_slope` over seed pairs."""
    return per_unit_slope(frame, x, PAIR)


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
    #: the estimates the verdict compared with their thresholds: seeds_needed is read from them
    decided_by: tuple[tuple[Estimate, float], ...] = ()


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



# --------------------------------------------------------------------------- shared shapes of statistic

def depth_slope(rows: pd.DataFrame, verdict: Callable[[Estimate, float], tuple[str, str]],
                what: str, measure: str = "", why_missing: str = "", gone: str = "", keys: Sequence[str] = PAIR,
                how: str = "") -> Outcome:
    """Outcome of a per-unit (``keys``: seed pairs or networks) slope of ``value`` on ``layer_index``
    judged by ``verdict`` against 0, with the mean ``what`` per layer as detail. Needs ≥ 2 layers.
    Only the widths at which every layer is present are used (:func:`like_for_like`); ``gone``
    names layers without any value; ``how`` (what the values are: calibrated, ...) ends the reason."""
    _require_levels(rows, "layer_index", 2, "≥ 2 layers")
    rows, note = like_for_like(rows, "layer_index", "width", measure or what, why_missing)
    note = "; ".join(n for n in (gone, note) if n)
    est = Estimate.of(per_unit_slope(rows, "layer_index", keys))
    label, reason = verdict(est, 0.0)
    by_layer = pair_means(rows, ["layer_index"], keys=keys).groupby("layer_index")["value"].mean()
    return Outcome(est, label, reason + (f"; {how}" if how else ""), f"mean {what} by layer: " + ", ".join(
        f"{i}: {_num(v)}" for i, v in by_layer.items()) + f"; {examples_note(rows)}" + (f"; {note}" if note else ""),
        decided_by=((est, 0.0),))


def positive_difference(left: pd.DataFrame, right: pd.DataFrame, keys: Sequence[str], detail: str,
                        how: str = "", unit_keys: Sequence[str] = PAIR) -> Outcome:
    """Outcome of "``left`` exceeds ``right``" matched on ``keys`` (e.g. seed pair, width, layer):
    the mean per-unit difference (influences subtract too), :func:`verdict_above` 0, and ``detail``
    filled with both sides' estimates. :class:`NotTestable` when nothing matches."""
    keys = list(keys)
    both = suffixed(left, "l", keys).merge(suffixed(right, "r", keys), on=keys)
    if both.empty:
        raise NotTestable("nothing to compare")
    li, ri = _inf_of(both, "value_l"), _inf_of(both, "value_r")
    inf = both[li].to_numpy(float) - both[ri].to_numpy(float) if li and len(li) == len(ri) else None
    diff = combine_columns(both, (both["value_l"] - both["value_r"]).to_numpy(float), inf)
    est = Estimate.of(pair_means(diff, keys=unit_keys))
    verdict, reason = verdict_above(est, 0.0)
    sides = (Estimate.of(pair_means(both, value=f"value_{side}", keys=unit_keys)) for side in "lr")
    return Outcome(est, verdict, reason + (f"; {how}" if how else ""),
                   detail.format(*sides) + f"; {examples_note(left)}", decided_by=((est, 0.0),))
