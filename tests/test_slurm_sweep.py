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

    for table, keys in [("runs.csv", ["arch", "width", "frozen_k", "seed"]),
                        ("measures.csv", ["control", "frozen_k", "seed_a", "seed_b", "layer", "measure", "view",
                                          "parameter", "parameter_value"]),
                        ("lmc.csv", ["frozen_k", "seed_a", "seed_b", "variant", "split"]),
                        ("rotation.csv", ["layer", "linear", "strength"])]:
        a = pd.read_csv(local / "results/summary" / table).sort_values(keys, ignore_index=True)
        b = pd.read_csv(cluster / "results/summary" / table).sort_values(keys, ignore_index=True)
        assert list(a.columns) == list(b.columns) and len(a) == len(b), table
        numeric = [c for c in a.columns if a[c].dtype.kind == "f" and "second" not in c and "time" not in c]
        np.testing.assert_allclose(a[numeric].to_numpy(float), b[numeric].to_numpy(float), rtol=1e-9, atol=1e-9,
                                   equal_nan=True, err_msg=table)
