"""Trends read on calibrated values: a planted sweep measured by the package's own moments and
measures, then judged by the findings. Chance alone (unrelated networks whose raw CKA rises with
width) must not pass as convergence; shared structure that grows with width must."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from convergent.findings import NOT_SUPPORTED, SUPPORTED, Tables, findings_table
from convergent.measures import compute_measures
from convergent.moments import moments_from_arrays

N_IMAGES = 360          # the digits test split's size


def planted_sweep(shared_by_width: dict[int, float], seeds=(0, 1, 2, 3), layers=(1, 2), seed: int = 0
                  ) -> pd.DataFrame:
    """measures.csv rows of cross-seed pairs: at width w, each network's units are ReLU of a mix of a
    latent shared by every seed (weight ``shared_by_width[w]``) and its own independent features."""
    rng = np.random.default_rng(seed)
    latent = {(w, li): rng.standard_normal((N_IMAGES, 8)) for w in shared_by_width for li in layers}
    nets = {}
    for s, w, li in itertools.product(seeds, shared_by_width, layers):
        own = np.random.default_rng([seed, s, w, li]).standard_normal((N_IMAGES, w))
        mix = np.random.default_rng([seed, s, w, li, 1]).standard_normal((8, w)) / np.sqrt(8)
        a = shared_by_width[w]
        nets[s, w, li] = np.maximum(a * latent[w, li] @ mix + np.sqrt(1 - a * a) * own, 0.0)
    frames = []
    labels = rng.integers(0, 10, N_IMAGES)
    for (sa, sb), w, li in itertools.product(itertools.combinations(seeds, 2), shared_by_width, layers):
        m = moments_from_arrays(nets[sa, w, li], nets[sb, w, li], labels, 10, null_permutations=10,
                                example_blocks=8)
        rows = compute_measures(m, {"enabled": ["cka"]})
        frames.append(rows.assign(dataset="toy", arch="mlp", width=w, frozen_k=0, frozen_from="trained",
                                  control="cross", seed_a=sa, seed_b=sb, order_seed_a=sa, order_seed_b=sb,
                                  layer=f"fc{li}", layer_index=li))
    return pd.concat(frames, ignore_index=True)


def _row(table: pd.DataFrame, fid: str) -> pd.Series:
    return table[table["finding"] == fid].iloc[0]


def test_chance_only_width_trend_is_not_convergence():
    measures = planted_sweep({16: 0.0, 32: 0.0, 64: 0.0})
    cka = measures[measures["measure"] == "cka_linear"]
    raw = cka.groupby("width")["value"].mean()
    assert raw.is_monotonic_increasing and raw[64] - raw[16] > 0.05     # the raw artefact is there
    calibrated = cka.groupby("width")["calibrated"].mean()
    assert (calibrated.abs() < 0.02).all(), calibrated
    row = _row(findings_table(Tables(measures=measures)), "kornblith_width")
    assert row["verdict"] == NOT_SUPPORTED, row["reason"]
    assert "calibrated" in row["reason"] or "debiased" in row["reason"]


def test_shared_structure_growing_with_width_is_convergence():
    measures = planted_sweep({16: 0.3, 32: 0.55, 64: 0.8})
    row = _row(findings_table(Tables(measures=measures)), "kornblith_width")
    assert row["verdict"] == SUPPORTED, row["reason"]

