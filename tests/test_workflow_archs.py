"""End to end on CIFAR-shaped data: the papers' conv architectures through every stage.

One small sweep on ``shapes32`` (3 × 32 × 32, generated offline) for ``cnn`` and ``resnet18``
at width 8 and ``wrn`` at widening factor 1, seeds 0 and 1, frozen_k 0 and 1, one epoch: train, extract, moments
(flattened conv layers are far wider than the 100 extracted images, so they take the dual
n × n Gram form), measures, cross-layer tables, LMC (every variant), rotation (ReLU and the
linear control, on a residual site of each block type) and the summaries.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from convergent.sweep import plan_sweep
from tests.workflow import run_snakemake, tiny_config, write_config

pytestmark = pytest.mark.slow

ARCHS = ["cnn", "resnet18", "wrn"]
#: a rotation site of every kind: a plain conv block after a pool (conv3), the resnet18 stem
#: (a Block feeding a residual stream) and a BasicBlock's inner pre-activation, a wrn
#: PreActBlock's inner pre-activation
ROTATION_LAYERS = {"cnn": ["conv3"], "resnet18": ["stem", "layer2.0"], "wrn": ["block2.0"]}


def shapes32_config() -> dict:
    config = tiny_config(datasets=["shapes32"], archs=ARCHS, widths=[8],
                         model={"cnn": {"depth": 3, "batchnorm": True}, "wrn": {"depth": 10}},
                         training={"epochs": 1, "batch_size": 50, "optimizer": "sgd", "lr": 0.05,
                                   "momentum": 0.9, "weight_decay": 0.0, "schedule": "constant"},
                         extract={"split": "test", "chunk_rows": 50, "max_samples": 100})
    # wrn's width is the widening factor k: WRN-10-1 (16/32/64 channels) is the small one; k = 8
    # (128/256/512) makes this test's LMC alone take ~14 CPU-minutes
    config["overrides"] = [{"arch": "wrn", "widths": [1]}]
    config["data"] = {"shapes32": {"n_train": 300, "n_test": 100}}
    config["rotation"] = {"layers": ROTATION_LAYERS, "strengths": [0.0, 1.0], "retrain_epochs": 1}
    config["measures"] = {"lasso_alphas": [0.0, 0.01], "spectral_k": [2], "minimal_max_neurons": 2}
    return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("shapes32")
    config = shapes32_config()
    write_config(workdir, config)
    run_snakemake(workdir)
    return workdir, config, plan_sweep(config)


def test_every_layer_of_every_arch_is_compared(finished):
    workdir, config, sweep = finished
    table = pd.read_csv(workdir / "results/summary/measures.csv")
    cross = table[table["control"] == "cross"]
    for exp in sweep.experiments:
        rows = cross[cross["arch"] == exp.arch]
        for measure in ("hungarian_mean_corr", "cka_linear", "alignment_top_c_a"):
            got = rows[rows["measure"] == measure]
            # one value per (cross pair, layer): no layer dropped for being wide
            n_pairs = sum(p.control == "cross" and p.arch == exp.arch for p in sweep.pairs())
            assert len(got) == n_pairs * len(exp.layers), (exp.arch, measure)
            assert set(got["layer"]) == set(exp.layers), (exp.arch, measure)
            assert np.isfinite(got["value"]).all(), got[~np.isfinite(got["value"])][["layer", "note"]]
    # the flattened conv layers are wider than the 100 rows: CKA came from the n × n Grams
    runs = pd.read_csv(workdir / "results/summary/runs.csv")
    assert set(runs["arch"]) == set(ARCHS) and (runs["dataset"] == "shapes32").all()


def test_lmc_barriers_exist_for_every_arch(finished):
    workdir, config, sweep = finished
    lmc = pd.read_csv(workdir / "results/summary/lmc.csv")
    for arch in ARCHS:
        rows = lmc[(lmc["arch"] == arch) & lmc["applicable"]]
        assert {"naive", "bn_reset", "permuted_weight", "repair"} <= set(rows["variant"]), arch
        assert np.isfinite(rows[["loss_barrier", "error_barrier"]]).all().all(), arch


def test_rotation_rows_for_relu_and_linear(finished):
    workdir, config, sweep = finished
    rot = pd.read_csv(workdir / "results/summary/rotation.csv")
    for arch, layers in ROTATION_LAYERS.items():
        rows = rot[rot["arch"] == arch]
        assert set(rows["layer"]) == set(layers), arch
        for linear in (False, True):
            part = rows[rows["linear"] == linear]
            assert len(part) == len(layers) * len(config["rotation"]["strengths"]), (arch, linear)
            assert (part["status"] == "ok").all() and np.isfinite(part["retrained_test_acc"]).all()
        identity = rows[rows["strength"] == 0]
        np.testing.assert_allclose(identity["rotated_test_acc"], identity["original_test_acc"], atol=1e-12)
