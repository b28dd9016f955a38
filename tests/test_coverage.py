"""Coverage of the findings' intervals on simulated sweeps with a known truth (issue 21).

Planted per-seed effects, per-pair noise and per-example-block noise (shared by every network);
four statistics: a pair mean, a per-network mean, a difference against the data-order ceiling
and a slope over width. The nominal 95 % interval must contain the truth in ≥ 92 % of 400 sweeps
at 5 and 10 seeds; at 3 seeds it must cover or say inconclusive. The old interval (pairs resampled
as if independent) is run too, to show the test can fail. The full table is bench/bench_coverage.py.
"""

from __future__ import annotations

import numpy as np
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


# --------------------------------------------------------------------------- end to end, through the findings

def _planted_alignment_sweep(n_seeds: int, rng, widths=(16,), layers=(1, 2)):
    """The issue's planted test: each network has its own target alignment (per-network sd 0.03) plus
    a little measurement noise; trained 0.60, untrained 0.30 on average. Truth of imani_emerges: 0.30."""
    import itertools

    import pandas as pd

    from convergent.findings import Tables

    trained = 0.60 + 0.03 * rng.standard_normal(n_seeds)
    untrained = 0.30 + 0.03 * rng.standard_normal(n_seeds)
    rows = []
    for control, level in (("cross", trained), ("floor", untrained)):
        for (a, b), w, layer in itertools.product(itertools.combinations(range(n_seeds), 2), widths, layers):
            for side, s in (("a", a), ("b", b)):
                rows.append({"dataset": "toy", "arch": "mlp", "width": w, "frozen_k": 0, "control": control,
                             "seed_a": a, "seed_b": b, "layer": f"l{layer}", "layer_index": layer,
                             "measure": f"alignment_top_c_{side}", "parameter": "k", "parameter_value": 10,
                             "value": level[s] + 0.005 * rng.standard_normal(), "note": ""})
    return Tables(measures=pd.DataFrame(rows)), 0.30


def _planted_width_sweep(n_seeds: int, rng, widths=(16, 32, 64)):
    """Calibrated CKA rising 0.05 per doubling of width, with a per-seed level and slope and per-pair
    noise; truth of kornblith_width: 0.05."""
    import itertools

    import pandas as pd

    from convergent.findings import Tables

    u, g = 0.03 * rng.standard_normal(n_seeds), 0.015 * rng.standard_normal(n_seeds)
    rows = []
    for (a, b), w in itertools.product(itertools.combinations(range(n_seeds), 2), widths):
        x = np.log2(w / widths[0])
        cal = 0.5 + 0.05 * x + u[a] + u[b] + (g[a] + g[b]) * x + 0.01 * rng.standard_normal()
        rows.append({"dataset": "toy", "arch": "mlp", "width": w, "frozen_k": 0, "control": "cross", "seed_a": a,
                     "seed_b": b, "layer": "l1", "layer_index": 1, "measure": "cka_linear", "parameter": "",
                     "parameter_value": np.nan, "chance": 0.1 * x, "calibrated": cal,
                     "value": 0.1 * x + cal * (1 - 0.1 * x), "note": ""})
    return Tables(measures=pd.DataFrame(rows)), 0.05


@pytest.mark.parametrize(("fid", "planted"), [("imani_emerges", _planted_alignment_sweep),
                                              ("kornblith_width", _planted_width_sweep)])
def test_the_findings_own_intervals_cover_a_planted_truth(fid, planted):
    """Issue 21 measured imani_emerges covering its truth in 50 % of sweeps at 5 seeds (pairs resampled
    as if independent). Through the package's own finding now, 200 sweeps at 5 seeds."""
    from convergent import findings as F

    finding = next(f for f in F.FINDINGS if f.id == fid)
    rng = np.random.default_rng(21)
    covered = 0
    for _ in range(200):
        tables, truth = planted(5, rng)
        row = F.evaluate(finding, tables, "toy", "mlp")
        assert row["seeds"] == 5, row["reason"]
        covered += row["ci_low"] <= truth <= row["ci_high"]
    assert covered / 200 >= 0.9, covered
