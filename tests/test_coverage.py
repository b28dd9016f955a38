"""Coverage of the findings' intervals on simulated sweeps with a known truth (issue 21).

Planted per-seed effects, per-pair noise and per-example-block noise (shared by every network);
four statistics: a pair mean, a per-network mean, a difference against the data-order ceiling
and a slope over width. The nominal 95 % interval must contain the truth in ≥ 92 % of 400 sweeps
at 5 and 10 seeds; at 3 seeds it must cover or say inconclusive. The old interval (pairs resampled
as if independent) is run too, to show the test can fail. The full table is bench/bench_coverage.py.
"""

from __future__ import annotations

import pytest

from convergent.coverage import SCENARIOS, coverage
from convergent.stats import DEFAULT_METHOD

SWEEPS = 400


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("seeds", [5, 10])
def test_default_interval_covers_at_5_and_10_seeds(scenario, seeds):
    c = coverage(scenario, seeds, sweeps=SWEEPS, method=DEFAULT_METHOD, seed=seeds)
    assert c.inconclusive == 0
    assert c.rate >= 0.92, (scenario, seeds, c)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_at_3_seeds_the_interval_covers_or_is_inconclusive(scenario):
    c = coverage(scenario, 3, sweeps=SWEEPS, method=DEFAULT_METHOD, seed=3)
    assert c.covered_or_inconclusive >= 0.92, (scenario, c)


def test_at_2_seeds_every_pair_statistic_is_inconclusive():
    c = coverage("pair_mean", 2, sweeps=50)
    assert c.inconclusive == 50


@pytest.mark.parametrize("scenario", ["pair_mean", "width_slope"])
def test_resampling_pairs_as_if_independent_fails(scenario):
    """The interval this replaced: more seeds make it worse (pairs grow as s², information as s)."""
    c = coverage(scenario, 10, sweeps=200, method="pair_percentile", seed=1)
    assert c.rate < 0.6, c
