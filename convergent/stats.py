"""Intervals over the independent units of a sweep: the Multi-Bootstrap over seeds and examples.

What is independent in a sweep is the **seed** (a network's initialisation and minibatch
order), not the seed pair: 3 seeds give 3 pairs from 3 networks, and both pairs containing
seed 2 move together. And the test images are a sample too: every network is measured on the
same images, so their luck is shared by every pair. The Multi-Bootstrap of Sellam et al. 2022
(*The MultiBERTs*, §4) resamples both at once; this module is that, with the conventions below.

**Units and labels.** A statistic is a function of the weighted means of one or more *groups*
of per-unit values (:class:`Units`): a group of seed pairs (labels ``(a, b)``, a ≠ b), of
networks (label ``s``) or of data-order pairs (label: the order seed). Every group of one
statistic shares one draw of the seeds: frozen − unfrozen, trained − untrained and
ceiling − cross resample the seeds the groups share jointly.

**One draw.** Seeds are drawn with replacement (counts ``c_s``, Σ c_s = number of seeds). A
unit labelled ``s`` gets weight ``c_s``; a pair ``(a, b)`` weight ``c_a·c_b``: every pair of
distinct drawn copies of two different seeds. Two copies of the *same* seed form no pair: the
sweep has no cross-seed value of a network with itself (that is the self-pair ceiling, a
different quantity), so the pair (s, s) is left out, as the U-statistic bootstrap does. A draw
in which some group has no weight (e.g. every copy is one seed) is discarded and redrawn.
Examples: when the units carry jackknife influences over B blocks of test images
(``influence[u, b] = (B − 1)(mean_b jk_b − jk_b)`` of the unit's value), the same draw takes
block multiplicities ``w ~ Multinomial(B, 1/B)``, shared by every unit (the same images for
every network), and perturbs each unit's value by its jackknife linearisation
``v* = v + (1/B) Σ_b (w_b − 1) influence[u, b]``. The statistic is recomputed on each draw.

**The interval.** With s seeds a percentile interval of a few lumpy draws is too narrow (it
estimates a variance from s values and then treats it as known). The default, ``seed_t``,
takes the bootstrap standard deviation, corrects its (s − 1)/s bias and uses Student's t with
s − 1 degrees of freedom: ``θ̂ ± t_{s−1, 0.975} · sd* · sqrt(s / (s − 1))``. It was chosen by
measured coverage against the plain percentile Multi-Bootstrap and the seed jackknife
(``bench/bench_coverage.py``, README "Intervals"). Fewer than :data:`MIN_SEEDS` seeds give no
interval at all (:attr:`Interval.enough` is False): the findings then say "inconclusive" and
name the seed count.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

LEVEL = 0.95
N_BOOT = 2000
#: fewer seeds than this cannot support an interval over seeds (2 seeds make 1 pair: no spread)
MIN_SEEDS = 3
#: the interval methods :func:`multi_bootstrap` knows; the first is the default
METHODS = ("seed_t", "seed_percentile", "seed_jackknife", "pair_percentile")
DEFAULT_METHOD = METHODS[0]


@dataclass(frozen=True)
class Units:
    """Per-unit values of one group of a statistic and the seeds each unit's weight comes from.

    ``values``: (n,) float64. ``labels``: n tuples of one label (a network or an order seed) or
    two (a pair of different seeds); any hashable labels, shared across the groups of one
    statistic. ``influence``: (n, B) float64 jackknife influence of B example blocks on each
    value (see the module docstring), or ``None`` where examples were not resampled.
    """

    values: np.ndarray
    labels: tuple[tuple[Hashable, ...], ...]
    influence: np.ndarray | None = None

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64)
        object.__setattr__(self, "values", values)
        if values.ndim != 1:
            raise ValueError(f"Units.values must be 1-D, got shape {values.shape}")
        if len(self.labels) != values.size:
            raise ValueError(f"Units has {values.size} values but {len(self.labels)} labels")
        if any(len(lab) not in (1, 2) for lab in self.labels):
            raise ValueError("each unit's label is one seed (a network) or two (a pair)")
        if self.influence is not None:
            inf = np.asarray(self.influence, dtype=np.float64)
            if inf.ndim != 2 or inf.shape[0] != values.size:
                raise ValueError(f"Units.influence must be (n, B) with n = {values.size}, got {inf.shape}")
            object.__setattr__(self, "influence", None if inf.shape[1] == 0 else np.nan_to_num(inf))

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray, labels: Sequence[Hashable | tuple],
           influence: np.ndarray | None = None) -> Units:
        """Units from plain labels: a tuple label is a pair, anything else one network."""
        labs = tuple(tuple(lab) if isinstance(lab, tuple) else (lab,) for lab in labels)
        return cls(np.asarray(values, dtype=np.float64), labs, influence)

    def finite(self) -> Units:
        """The units whose value is finite."""
        keep = np.isfinite(self.values)
        if keep.all():
            return self
        inf = None if self.influence is None else self.influence[keep]
        return Units(self.values[keep], tuple(lab for lab, k in zip(self.labels, keep) if k), inf)

    @property
    def seeds(self) -> set[Hashable]:
        return {s for lab in self.labels for s in lab}

    @property
    def blocks(self) -> int:
        return 0 if self.influence is None else self.influence.shape[1]


@dataclass(frozen=True)
class Interval:
    """A statistic, its 95 % interval and what it was resampled over.

    ``seeds``: independent seeds the statistic draws on; ``units``: units in its largest group;
    ``se``: the resampling standard deviation (NaN when there is none); ``blocks``: example
    blocks resampled (0: examples contributed nothing); ``enough``: whether the seeds support an
    interval (≥ :data:`MIN_SEEDS` and some spread to resample)."""

    value: float
    ci_low: float
    ci_high: float
    se: float
    seeds: int
    units: int
    blocks: int = 0
    method: str = DEFAULT_METHOD

    @property
    def enough(self) -> bool:
        return self.seeds >= MIN_SEEDS and np.isfinite(self.se)


Combine = Callable[[Mapping[str, np.ndarray]], np.ndarray]


def _only(means: Mapping[str, np.ndarray]) -> np.ndarray:
    (only,) = means.values()
    return only


def difference(left: str, right: str) -> Combine:
    """``mean(left) − mean(right)``, for :func:`multi_bootstrap`'s ``combine``."""
    return lambda m: m[left] - m[right]


def _codes(groups: Mapping[str, Units]) -> tuple[list[Hashable], dict[str, np.ndarray]]:
    """The seed universe (sorted union of labels) and each group's labels as (n, 2) codes, −1 = none."""
    universe = sorted({s for g in groups.values() for s in g.seeds}, key=lambda s: (str(type(s)), s))
    index = {s: i for i, s in enumerate(universe)}
    codes = {}
    for name, g in groups.items():
        c = np.full((g.values.size, 2), -1, dtype=np.int64)
        for u, lab in enumerate(g.labels):
            c[u, : len(lab)] = [index[s] for s in lab]
            if len(lab) == 2 and lab[0] == lab[1]:
                raise ValueError(f"group {name!r} has a pair of seed {lab[0]!r} with itself; label it as one network")
        codes[name] = c
    return universe, codes


def _unit_weights(counts: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """(draws, units) weights: c_a for a network, c_a·c_b for a pair (never a seed with itself)."""
    w = counts[:, codes[:, 0]].astype(np.float64)
    pair = codes[:, 1] >= 0
    if pair.any():
        w[:, pair] *= counts[:, codes[pair, 1]]
    return w


def _weighted_means(groups: Mapping[str, Units], codes: Mapping[str, np.ndarray], counts: np.ndarray,
                    block_w: np.ndarray | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each group's weighted mean per draw, and which draws gave every group some weight."""
    means, ok = {}, np.ones(counts.shape[0], dtype=bool)
    for name, g in groups.items():
        w = _unit_weights(counts, codes[name])
        vals = np.broadcast_to(g.values, w.shape)
        if block_w is not None and g.influence is not None:
            vals = vals + (block_w - 1.0) @ g.influence.T / g.influence.shape[1]
        total = w.sum(axis=1)
        ok &= total > 0
        means[name] = (w * vals).sum(axis=1) / np.where(total > 0, total, 1.0)
    return means, ok


def multi_bootstrap(groups: Mapping[str, Units] | Units, combine: Combine | None = None, *,
                    method: str = DEFAULT_METHOD, n_boot: int = N_BOOT, seed: int = 0,
                    level: float = LEVEL) -> Interval:
    """The statistic ``combine({group: weighted mean})`` with its interval over seeds and examples.

    ``groups``: {name: :class:`Units`} (or one :class:`Units`); ``combine`` maps each group's
    mean (an array over draws) to the statistic; default: the single group's mean. ``method``
    is one of :data:`METHODS` (the module docstring defines each; ``pair_percentile`` is the
    old, wrong one — pairs resampled as if independent — kept for the coverage comparison).
    Non-finite values are dropped first. Raises ``ValueError`` on an empty group.
    """
    if isinstance(groups, Units):
        groups = {"value": groups}
    if method not in METHODS:
        raise ValueError(f"unknown interval method {method!r}; known: {', '.join(METHODS)}")
    groups = {name: g.finite() for name, g in groups.items()}
    empty = [name for name, g in groups.items() if g.values.size == 0]
    if empty:
        raise ValueError(f"no finite values in group(s) {empty}")
    combine = combine or _only
    universe, codes = _codes(groups)
    n_seeds = len(universe)
    blocks = {g.blocks for g in groups.values() if g.blocks}
    if len(blocks) > 1:
        raise ValueError(f"groups have different numbers of example blocks: {sorted(blocks)}")
    n_blocks = blocks.pop() if blocks else 0
    point_means, _ = _weighted_means(groups, codes, np.ones((1, n_seeds), dtype=np.int64), None)
    value = float(np.asarray(combine(point_means))[0])
    n_units = max(g.values.size for g in groups.values())
    nan = Interval(value, value, value, float("nan"), n_seeds, n_units, n_blocks, method)
    if method == "pair_percentile":
        return _pair_percentile(groups, combine, value, n_seeds, n_units, n_boot, seed, level)
    if method == "seed_jackknife":
        return _seed_jackknife(groups, codes, combine, value, n_seeds, n_units, n_blocks, level)
    if n_seeds < 2:
        return nan
    rng = np.random.default_rng(seed)
    stats: list[np.ndarray] = []
    for _ in range(20):      # redraw the draws in which some group had no weight
        counts = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_boot)
        block_w = rng.multinomial(n_blocks, np.full(n_blocks, 1.0 / n_blocks), size=n_boot) if n_blocks else None
        means, ok = _weighted_means(groups, codes, counts, block_w)
        with np.errstate(invalid="ignore", divide="ignore"):
            s = np.asarray(combine(means), dtype=np.float64)
        stats.append(s[ok & np.isfinite(s)])
        if sum(x.size for x in stats) >= n_boot:
            break
    draws = np.concatenate(stats)[:n_boot]
    if draws.size < 2:
        return nan
    if np.ptp(draws) == 0:   # every seed agrees exactly: a zero-width interval (decisive only with enough seeds)
        return Interval(value, value, value, 0.0, n_seeds, n_units, n_blocks, method)
    alpha = (1 - level) / 2
    if method == "seed_percentile":
        lo, hi = np.quantile(draws, [alpha, 1 - alpha])
        return Interval(value, float(lo), float(hi), float(draws.std(ddof=1)), n_seeds, n_units, n_blocks, method)
    se = float(draws.std(ddof=1)) * np.sqrt(n_seeds / (n_seeds - 1))
    half = float(sps.t.ppf(1 - alpha, n_seeds - 1)) * se
    return Interval(value, value - half, value + half, se, n_seeds, n_units, n_blocks, method)


def _seed_jackknife(groups: Mapping[str, Units], codes: Mapping[str, np.ndarray], combine: Combine, value: float,
                    n_seeds: int, n_units: int, n_blocks: int, level: float) -> Interval:
    """Leave one seed out at a time (its pairs go with it); var = (s−1)/s Σ (θ_(i) − θ̄)², plus the
    examples' block-jackknife variance of the statistic; Student's t with s − 1 degrees of freedom."""
    nan = Interval(value, value, value, float("nan"), n_seeds, n_units, n_blocks, "seed_jackknife")
    if n_seeds < 2:
        return nan
    counts = np.ones((n_seeds, n_seeds), dtype=np.int64) - np.eye(n_seeds, dtype=np.int64)
    means, ok = _weighted_means(groups, codes, counts, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        loo = np.asarray(combine(means), dtype=np.float64)
    loo = loo[ok & np.isfinite(loo)]
    if loo.size < 2:
        return nan
    m = loo.size
    var = (m - 1) / m * float(((loo - loo.mean()) ** 2).sum())
    if n_blocks:   # leave example block b out: v_(b) = v − influence_b / (B − 1)
        ones = np.ones((1, n_seeds), dtype=np.int64)
        reps = []
        for b in range(n_blocks):
            shifted = {name: Units(g.values - (0 if g.influence is None else g.influence[:, b] / (n_blocks - 1)),
                                   g.labels) for name, g in groups.items()}
            reps.append(float(np.asarray(combine(_weighted_means(shifted, codes, ones, None)[0]))[0]))
        reps = np.asarray(reps)
        var += (n_blocks - 1) / n_blocks * float(((reps - reps.mean()) ** 2).sum())
    se = float(np.sqrt(var))
    if se == 0:
        return nan
    half = float(sps.t.ppf(1 - (1 - level) / 2, m - 1)) * se
    return Interval(value, value - half, value + half, se, n_seeds, n_units, n_blocks, "seed_jackknife")


def _pair_percentile(groups: Mapping[str, Units], combine: Combine, value: float, n_seeds: int, n_units: int,
                     n_boot: int, seed: int, level: float) -> Interval:
    """The old interval: each group's units resampled independently, as if pairs were independent."""
    rng = np.random.default_rng(seed)
    means = {name: g.values[rng.integers(0, g.values.size, (n_boot, g.values.size))].mean(axis=1)
             for name, g in groups.items()}
    draws = np.asarray(combine(means), dtype=np.float64)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(draws, [alpha, 1 - alpha])
    se = float(draws.std(ddof=1)) if n_units > 1 else float("nan")
    return Interval(value, float(lo), float(hi), se, n_seeds, n_units, 0, "pair_percentile")


def seeds_needed(interval: Interval, threshold: float, cap: int = 1000) -> float:
    """The seeds a decisive verdict against ``threshold`` would need if the spread between seeds
    stayed as observed: the smallest s ≥ :data:`MIN_SEEDS` at which the interval
    ``value ± t_{s−1, 0.975} · se · sqrt(n / s)`` (n: the seeds observed, ``se`` their standard
    error, so se·sqrt(n) is the per-seed spread) no longer contains the threshold. It may be below
    n (the verdict was already decisive with fewer). NaN when no spread was measured; ``inf`` past
    ``cap`` seeds or for a value on the threshold."""
    if not np.isfinite(interval.se) or interval.seeds < 2:
        return float("nan")
    gap = abs(interval.value - threshold)
    if gap == 0:
        return float("inf")
    s = np.arange(MIN_SEEDS, cap + 1)
    half = sps.t.ppf(1 - (1 - LEVEL) / 2, s - 1) * interval.se * np.sqrt(interval.seeds / s)
    ok = np.nonzero(half < gap)[0]
    return float(s[ok[0]]) if ok.size else float("inf")


# --------------------------------------------------------------------------- tables of pairs

def unit_labels(frame: pd.DataFrame) -> tuple[tuple[Hashable, ...], ...]:
    """The resampling label of each row of a pair or network table.

    * a cross-seed (or floor) pair ``seed_a ≠ seed_b``: the two seeds;
    * a data-order pair (same init seed, different minibatch order): its order seed
      (``order_seed_b``), the one that varies; the reference network is fixed;
    * a self pair (a network with itself) or a per-network row (column ``seed``): the seed.
    """
    if "seed_a" in frame and "seed_b" in frame:
        a, b = frame["seed_a"].to_numpy(), frame["seed_b"].to_numpy()
        oa = frame["order_seed_a"].to_numpy() if "order_seed_a" in frame else a
        ob = frame["order_seed_b"].to_numpy() if "order_seed_b" in frame else b
        out = []
        for sa, sb, xa, xb in zip(a, b, oa, ob):
            if sa != sb:
                out.append((_plain(sa), _plain(sb)))
            elif xa != xb:
                out.append((_plain(xb),))
            else:
                out.append((_plain(sa),))
        return tuple(out)
    if "seed" in frame:   # a network; a data-order network (reference init, other order) by its order seed
        seed = frame["seed"].to_numpy()
        order = frame["order_seed"].to_numpy() if "order_seed" in frame else seed
        return tuple((_plain(o if o != s else s),) for s, o in zip(seed, order))
    raise ValueError("need columns seed_a and seed_b (pairs) or seed (networks) to resample seeds")


def _plain(x: object) -> Hashable:
    return x.item() if isinstance(x, np.generic) else x


def jk_columns(frame: pd.DataFrame) -> list[str]:
    """The block-jackknife replicate columns ``jk_0 … jk_{B−1}`` of a measures table, in order."""
    cols = [c for c in frame.columns if isinstance(c, str) and c.startswith("jk_") and c[3:].isdigit()]
    return sorted(cols, key=lambda c: int(c[3:]))


def jackknife_influence(replicates: np.ndarray) -> np.ndarray:
    """(n, B) influences ``I_b = (B − 1)(mean_b jk_b − jk_b)`` of (n, B) leave-one-block-out replicates;
    a row with any non-finite replicate gets 0 (its examples are not resampled)."""
    reps = np.asarray(replicates, dtype=np.float64)
    inf = (reps.shape[1] - 1) * (reps.mean(axis=1, keepdims=True) - reps)
    return np.where(np.isfinite(inf).all(axis=1, keepdims=True), inf, 0.0)


def with_jk_influence(frame: pd.DataFrame, value: str = "value") -> pd.DataFrame:
    """``frame`` with ``inf_*`` columns from its ``jk_*`` replicates (unchanged without them)."""
    cols = jk_columns(frame)
    if len(cols) < 2 or value != "value":
        return frame
    inf = jackknife_influence(frame[cols].to_numpy(dtype=np.float64))
    return frame.assign(**{f"inf_{b}": inf[:, b] for b in range(len(cols))})


def influence_columns(frame: pd.DataFrame) -> list[str]:
    """The example-influence columns ``inf_0 … inf_{B−1}`` of a frame, in order."""
    cols = [c for c in frame.columns if isinstance(c, str) and c.startswith("inf_") and c[4:].isdigit()]
    return sorted(cols, key=lambda c: int(c[4:]))


def units_of(frame: pd.DataFrame, value: str = "value") -> Units:
    """:class:`Units` of a frame with one row per unit (pair or network), its ``inf_*`` columns as
    the example influence."""
    inf_cols = influence_columns(frame)
    inf = frame[inf_cols].to_numpy(dtype=np.float64) if inf_cols else None
    return Units(frame[value].to_numpy(dtype=np.float64), unit_labels(frame), inf)


def bootstrap_ci(values: np.ndarray, level: float = LEVEL, n_boot: int = N_BOOT,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (1-D, NaNs not allowed), the
    values treated as independent units. Only for units that are independent; a table of seed
    pairs goes through :func:`multi_bootstrap` instead.

    With a single value the interval collapses to that value: there is no spread to
    resample, and the figure should show that rather than invent one.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"need a non-empty 1-D array, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("bootstrap_ci got non-finite values; drop or report them first")
    if values.size == 1:
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.size, size=(n_boot, values.size))
    means = values[idx].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


def summarise(frame: pd.DataFrame, by: list[str], value: str = "value") -> pd.DataFrame:
    """Mean and 95 % interval of ``value`` within each group of ``by``, for the figures' bands.

    The same intervals as the findings: rows are first averaged per unit (seed pair, or
    network for a per-network table with a ``seed`` column), then :func:`multi_bootstrap`
    resamples seeds, and the example blocks where the rows carry ``jk_*`` replicates. With fewer
    than :data:`MIN_SEEDS` seeds there is no band (the interval collapses to the mean). A table
    without seed columns resamples its rows. ``n``: units.
    """
    frame = with_jk_influence(frame, value)
    inf_cols = influence_columns(frame)
    pair_keys = [c for c in ("seed_a", "seed_b", "order_seed_a", "order_seed_b") if c in frame]
    if {"seed_a", "seed_b"} <= set(pair_keys):
        unit_keys = pair_keys
    elif "seed" in frame:
        unit_keys = ["seed"] + [c for c in ("order_seed",) if c in frame]
    else:
        unit_keys = []
    rows = []
    for key, group in frame.groupby(by, sort=True):
        group = group[np.isfinite(group[value].to_numpy(dtype=np.float64))]
        if group.empty:
            continue
        key = key if isinstance(key, tuple) else (key,)
        if unit_keys:
            per_unit = group.groupby(unit_keys, as_index=False)[[value, *inf_cols]].mean()
            iv = multi_bootstrap(units_of(per_unit, value))
            mean, n = iv.value, len(per_unit)
            lo, hi = (iv.ci_low, iv.ci_high) if iv.enough else (mean, mean)
        else:
            vals = group[value].to_numpy(dtype=np.float64)
            mean, n = float(vals.mean()), int(vals.size)
            lo, hi = bootstrap_ci(vals)
        rows.append({**dict(zip(by, key)), "mean": float(mean), "ci_low": float(lo), "ci_high": float(hi), "n": int(n)})
    return pd.DataFrame(rows, columns=[*by, "mean", "ci_low", "ci_high", "n"])
