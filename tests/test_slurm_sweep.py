"""The tiny sweep through the SLURM profile on a real single-node cluster equals a local run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.slurm_cluster import describe_run, run_snakemake_on_slurm
from tests.workflow import REPO, run_snakemake, tiny_config, write_config

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

RULES = ["train", "extract", "moments", "measures", "lmc", "rotation", "runs_table", "measures_table",
         "lmc_table", "rotation_table", "figures"]


def small_config():
    config = tiny_config(archs=["mlp"], frozen_k=[0, 1])
    config["rotation"]["layers"] = ["fc1"]
    return config


def test_tiny_sweep_on_slurm_equals_local_run(slurm_cluster_info, tmp_path):
    local, cluster = tmp_path / "local", tmp_path / "slurm"
    for workdir in (local, cluster):
        workdir.mkdir()
        write_config(workdir, small_config())
    run_snakemake(local)
    # one thread per job on both sides: CPU training is bit-reproducible only at equal thread counts
    proc = run_snakemake_on_slurm(cluster, REPO / "Snakefile", cluster / "config.yaml",
                                  profile_overrides={"set-threads": {rule: 1 for rule in RULES}},
                                  env={"PYTHONHASHSEED": "0"}, timeout=2400)
    assert proc.returncode == 0, describe_run(proc, cluster)
    assert list((cluster / ".snakemake" / "slurm_logs").rglob("*.log")), "no job went through SLURM"

    # Training is bit-reproducible on CPU at equal thread counts: run tables must agree exactly.
    runs_local, runs_slurm = (read(w, "runs.csv", ["arch", "width", "frozen_k", "seed"]) for w in (local, cluster))
    assert_same_numbers(runs_local, runs_slurm, rtol=0)
    # Everything downstream goes through BLAS, whose summation order may differ between a
    # SLURM job step and a local job: continuous quantities agree to 1e-6; quantities that
    # are discrete in nature (cluster assignments, lasso non-zero counts, k for 90 %) may
    # flip on near-ties, so for them only the table's shape and NaN pattern must agree.
    for table, keys in [("lmc.csv", ["frozen_k", "seed_a", "seed_b", "variant", "split"]),
                        ("rotation.csv", ["layer", "linear", "strength"])]:
        assert_same_numbers(read(local, table, keys), read(cluster, table, keys), rtol=1e-6)
    keys = ["control", "frozen_k", "seed_a", "seed_b", "layer", "measure", "view", "parameter", "parameter_value"]
    a, b = read(local, "measures.csv", keys), read(cluster, "measures.csv", keys)
    assert a[keys].astype(str).equals(b[keys].astype(str))
    assert (a["value"].isna() == b["value"].isna()).all()
    continuous = a["measure"].isin(["cka_linear", "cka_linear_debiased", "hungarian_mean_corr"])
    assert continuous.sum() > 0
    np.testing.assert_allclose(a.loc[continuous, "value"], b.loc[continuous, "value"], rtol=1e-6, atol=1e-9)


def read(workdir, table, keys):
    return pd.read_csv(workdir / "results/summary" / table).sort_values(keys, ignore_index=True)


def assert_same_numbers(a: pd.DataFrame, b: pd.DataFrame, rtol: float) -> None:
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    numeric = [c for c in a.columns if a[c].dtype.kind == "f" and "second" not in c and "time" not in c]
    np.testing.assert_allclose(a[numeric].to_numpy(float), b[numeric].to_numpy(float), rtol=rtol,
                               atol=1e-9 if rtol else 0, equal_nan=True)
