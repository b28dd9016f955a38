"""Comparison groups change no number: a group's moments, measures and LMC equal those of each of its
pairs computed alone (what a job per pair gave before the groups)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from convergent.activations import ActivationStoreWriter
from convergent.jobs import lmc_job, measures_job, moments_job, train_job

N = 64


def _store(path, rng, shift=0.0):
    with ActivationStoreWriter(path, N, chunk_rows=16) as w:
        w.create("fc1", (5,))
        w.create("fc2", (3,))
        w.create("targets", (), dtype="int64")
        w.append("fc1", np.maximum(rng.standard_normal((N, 5)) + shift, 0).astype(np.float32))
        w.append("fc2", rng.standard_normal((N, 3)).astype(np.float32))
        w.append("targets", np.arange(N) % 3)   # the same samples in every store
    return str(path)


def test_a_groups_moments_and_measures_equal_each_pair_alone(tmp_path):
    rng = np.random.default_rng(0)
    a, b, c = (_store(tmp_path / f"{s}.zarr", rng, shift) for s, shift in (("a", 0.0), ("b", 0.3), ("c", -0.2)))
    pairs = {"cross/s0-s2": [a, c], "cross/s1-s2": [b, c], "ceiling/s2-s2": [c, c]}
    layers, index = ["fc1", "fc2"], {"fc1": 1, "fc2": 2}
    coords = {key: {"control": key.split("/")[0], "pair": key} for key in pairs}
    moments_job(pairs=pairs, layers=layers, params={}, out_dir=str(tmp_path / "group"))
    group = measures_job(moments_dir=str(tmp_path / "group"), pairs=coords, layers=layers, params={},
                         layer_index=index, out_csv=str(tmp_path / "group.csv"))
    alone = []
    for i, (key, stores) in enumerate(pairs.items()):
        out = tmp_path / f"alone{i}"
        moments_job(pairs={key: stores}, layers=layers, params={}, out_dir=str(out))
        for layer in layers:   # the moments files are byte-identical
            assert (out / key / f"{layer}.npz").read_bytes() == (tmp_path / "group" / key / f"{layer}.npz").read_bytes()
        alone.append(measures_job(moments_dir=str(out), pairs={key: coords[key]}, layers=layers, params={},
                                  layer_index=index, out_csv=str(out / "measures.csv")))
    pd.testing.assert_frame_equal(group, pd.concat(alone, ignore_index=True), check_exact=True)
    assert set(group["pair"]) == set(pairs) and group["value"].notna().any()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Three tiny trained digits MLPs (seeds 0, 1, 2)."""
    root = tmp_path_factory.mktemp("nets")
    settings = {"model": {"depth": 2}, "training": {"epochs": 1}, "frozen_from": "trained", "reference_seed": 0}
    paths = {}
    for seed in (0, 1, 2):
        out = root / f"s{seed}"
        run = {"dataset": "digits", "arch": "mlp", "width": 8, "frozen_k": 0, "seed": seed}
        train_job(run=run, settings=settings, reference=None, data_dir=str(root / "data"), download=False,
                  device="cpu", threads=1, out_model=str(out / "model.pt"), out_init=str(out / "init.pt"),
                  out_log_csv=str(out / "log.csv"), out_metrics=str(out / "metrics.json"))
        paths[seed] = str(out / "model.pt")
    return root, paths


def test_a_groups_lmc_equals_each_pair_alone(checkpoints, tmp_path):
    root, ckpt = checkpoints

    def pair(a, b, variants):
        coords = {"dataset": "digits", "arch": "mlp", "width": 8, "frozen_k": 0, "seed_a": a, "seed_b": b,
                  "control": "cross", "order_seed_a": a, "order_seed_b": b}
        return {"checkpoints": [ckpt[a], ckpt[b]], "variants": variants, "coordinates": coords}

    # two pairs with different first seeds: each must start from its own seed's random state
    pairs = {"cross/s0-s2": pair(0, 2, ["naive", "permuted_weight", "repair"]),
             "cross/s1-s2": pair(1, 2, ["naive", "permuted_activation", "repair"])}
    kw = {"settings": {"model": {"depth": 2}}, "params": {"alphas": 3}, "data_dir": str(root / "data"),
          "device": "cpu", "threads": 1}
    lmc_job(pairs=pairs, out_curve=str(tmp_path / "curve.csv"), out_barriers=str(tmp_path / "bars.csv"), **kw)
    for name in ("curve", "bars"):
        group = pd.read_csv(tmp_path / f"{name}.csv")
        alone = []
        for i, (key, p) in enumerate(pairs.items()):
            lmc_job(pairs={key: p}, out_curve=str(tmp_path / f"curve{i}.csv"),
                    out_barriers=str(tmp_path / f"bars{i}.csv"), **kw)
            alone.append(pd.read_csv(tmp_path / f"{name}{i}.csv"))
        pd.testing.assert_frame_equal(group, pd.concat(alone, ignore_index=True), check_exact=True)
        assert set(group["seed_a"]) == {0, 1}
