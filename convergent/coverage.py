"""Simulated sweeps with a known truth, to measure the coverage of :mod:`convergent.stats`' intervals.

Each scenario plants a statistic's true value and draws one sweep's units the way a sweep makes
them: a random effect per **seed** (shared by every pair the seed is in), independent noise per
**pair** (or per network), and the luck of the **test images**: B blocks of images with an effect
per block shared by every network (the same images for all), plus a small pair × block
interaction. Each unit's value is the mean over blocks, and its jackknife replicates ``jk_b`` (the
mean without block b) give the example influence the Multi-Bootstrap uses. The truth is the
population value (infinitely many seeds and images).

Scenarios (:data:`SCENARIOS`): ``pair_mean``, ``network_mean``, ``ceiling_difference`` (data-order
ceiling minus cross-seed pairs, their seeds shared) and ``width_slope`` (a per-pair slope over three
widths). :func:`coverage` runs many sweeps; ``tests/test_coverage.py`` (CI) and
``bench/bench_coverage.py`` (the README table) call it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from convergent.stats import DEFAULT_METHOD, N_BOOT, Combine, Units, difference, multi_bootstrap

#: spreads of the planted effects: per seed, per pair (or network), per example block (shared by every
#: unit) and pair × block; sized like the default sweep's (seed 2's alignment 0.06 off the others')
SEED_SD, PAIR_SD, BLOCK_SD, INTERACTION_SD = 0.03, 0.01, 0.03, 0.01
BLOCKS = 8


@dataclass(frozen=True)
class Sweep:
    """One simulated sweep: the groups to resample, how they combine, and the true statistic."""

    groups: Mapping[str, Units]
    combine: Combine | None
    truth: float


def _with_examples(base: np.ndarray, shared: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Values (n,) and influence (n, B) of units whose block-level values are ``base`` plus the
    shared block effects ``shared`` (B,) plus a unit × block interaction."""
    blockwise = base[:, None] + shared[None, :] + INTERACTION_SD * rng.standard_normal((base.size, shared.size))
    value = blockwise.mean(axis=1)
    b = shared.size
    jk = (blockwise.sum(axis=1, keepdims=True) - blockwise) / (b - 1)
    influence = (b - 1) * (jk.mean(axis=1, keepdims=True) - jk)
    return value, influence


def pair_mean(n_seeds: int, rng: np.random.Generator) -> Sweep:
    """Mean over cross-seed pairs of μ + u_a + u_b + e_ab (+ examples); truth μ."""
    mu, u = 0.5, SEED_SD * rng.standard_normal(n_seeds)
    pairs = list(itertools.combinations(range(n_seeds), 2))
    base = np.array([mu + u[a] + u[b] + PAIR_SD * rng.standard_normal() for a, b in pairs])
    value, inf = _with_examples(base, BLOCK_SD * rng.standard_normal(BLOCKS), rng)
    return Sweep({"value": Units(value, tuple(pairs), inf)}, None, mu)


def network_mean(n_seeds: int, rng: np.random.Generator) -> Sweep:
    """Mean over networks of μ + u_s + e_s (+ examples), e.g. a network's target alignment; truth μ."""
    mu = 0.6
    base = mu + SEED_SD * rng.standard_normal(n_seeds) + PAIR_SD * rng.standard_normal(n_seeds)
    value, inf = _with_examples(base, BLOCK_SD * rng.standard_normal(BLOCKS), rng)
    return Sweep({"value": Units(value, tuple((s,) for s in range(n_seeds)), inf)}, None, mu)


def ceiling_difference(n_seeds: int, rng: np.random.Generator) -> Sweep:
    """Data-order ceiling (reference seed 0's init, each other seed's minibatch order) minus the
    cross-seed pairs. The order seed's effect is shared with that seed's own network (the same
    minibatch order), and the images with every pair. Truth: μ_ceiling − μ_cross, conditional on the
    reference network (a single reference cannot be resampled)."""
    mu_c, mu_x = 0.9, 0.5
    u = SEED_SD * rng.standard_normal(n_seeds)
    shared = BLOCK_SD * rng.standard_normal(BLOCKS)
    pairs = list(itertools.combinations(range(n_seeds), 2))
    cross = np.array([mu_x + u[a] + u[b] + PAIR_SD * rng.standard_normal() for a, b in pairs])
    xv, xi = _with_examples(cross, shared, rng)
    order = np.array([mu_c + 0.5 * u[o] + PAIR_SD * rng.standard_normal() for o in range(1, n_seeds)])
    ov, oi = _with_examples(order, 0.5 * shared, rng)
    groups = {"ceiling": Units(ov, tuple((o,) for o in range(1, n_seeds)), oi), "cross": Units(xv, tuple(pairs), xi)}
    return Sweep(groups, difference("ceiling", "cross"), mu_c - mu_x)


def width_slope(n_seeds: int, rng: np.random.Generator, levels: int = 3) -> Sweep:
    """Per-pair least-squares slope over ``levels`` widths (x = log2 width − min) of
    μ + βx + u_a + u_b + (g_a + g_b)x + e (+ examples per width); truth β."""
    mu, beta = 0.7, 0.05
    x = np.arange(levels, dtype=np.float64)
    u, g = SEED_SD * rng.standard_normal(n_seeds), 0.5 * SEED_SD * rng.standard_normal(n_seeds)
    pairs = list(itertools.combinations(range(n_seeds), 2))
    xc = (x - x.mean()) / ((x - x.mean()) ** 2).sum()          # slope = Σ xc_i y_i
    slope_v, slope_i = np.zeros(len(pairs)), np.zeros((len(pairs), BLOCKS))
    for level in range(levels):
        base = np.array([mu + beta * x[level] + u[a] + u[b] + (g[a] + g[b]) * x[level]
                         + PAIR_SD * rng.standard_normal() for a, b in pairs])
        v, i = _with_examples(base, BLOCK_SD * rng.standard_normal(BLOCKS), rng)
        slope_v += xc[level] * v
        slope_i += xc[level] * i
    return Sweep({"value": Units(slope_v, tuple(pairs), slope_i)}, None, beta)


SCENARIOS: dict[str, Callable[[int, np.random.Generator], Sweep]] = {
    "pair_mean": pair_mean, "network_mean": network_mean, "ceiling_difference": ceiling_difference,
    "width_slope": width_slope}


@dataclass(frozen=True)
class Coverage:
    """Out of ``sweeps``: intervals that contain the truth, seed counts too small for an interval
    (inconclusive), and the mean interval width over the sweeps that had one."""

    sweeps: int
    covered: int
    inconclusive: int
    mean_width: float

    @property
    def rate(self) -> float:
        """Coverage among the sweeps that gave an interval."""
        decided = self.sweeps - self.inconclusive
        return self.covered / decided if decided else float("nan")

    @property
    def covered_or_inconclusive(self) -> float:
        return (self.covered + self.inconclusive) / self.sweeps


def coverage(scenario: str, n_seeds: int, sweeps: int = 400, method: str = DEFAULT_METHOD, seed: int = 0,
             n_boot: int = N_BOOT) -> Coverage:
    """Simulate ``sweeps`` sweeps of ``scenario`` with ``n_seeds`` seeds; count the 95 % intervals of
    ``method`` that contain the truth. An interval is only counted when the seeds support one
    (:attr:`convergent.stats.Interval.enough`); the others are inconclusive."""
    rng = np.random.default_rng(seed)
    covered = inconclusive = 0
    widths = []
    for i in range(sweeps):
        sweep = SCENARIOS[scenario](n_seeds, rng)
        iv = multi_bootstrap(sweep.groups, sweep.combine, method=method, n_boot=n_boot, seed=i)
        if method != "pair_percentile" and not iv.enough:
            inconclusive += 1
            continue
        covered += iv.ci_low <= sweep.truth <= iv.ci_high
        widths.append(iv.ci_high - iv.ci_low)
    return Coverage(sweeps, covered, inconclusive, float(np.mean(widths)) if widths else float("nan"))
