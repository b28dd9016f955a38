"""End to end with a network and data by import path: a vision transformer on a loader's data.

``sweep.archs: [tests.models_vit:tiny_vit]`` (torchvision's VisionTransformer, no BatchNorm)
and ``sweep.datasets: [tests.datasets_byo:small_shapes]`` run every stage: train (frozen_k 0
and 1), extract (a conv layer, the patch embedding, and two tokens layers), moments, measures,
cross-layer tables, LMC (naive; bn_reset has no BatchNorm to reset and the permuted / REPAIR
variants no permutation spec: rows with applicable = False) and the findings. The rotation test
is switched off (the architecture declares no rotation site; planning refuses it otherwise). Every file under results/
has the mode the umask gives.
"""

from __future__ import annotations

import os
import stat

import numpy as np
import pandas as pd
import pytest

from convergent.sweep import plan_sweep
from tests.workflow import REPO, run_snakemake, tiny_config, write_config

pytestmark = pytest.mark.slow

ARCH = "tests.models_vit:tiny_vit"
DATA = "tests.datasets_byo:small_shapes"
LAYERS = ["conv_proj", "encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"]


def byo_config() -> dict:
    config = tiny_config(datasets=[DATA], archs=[ARCH], widths=[8], seeds=[0, 1, 2], frozen_k=[0, 1],
                         model={ARCH: {"layers": LAYERS, "depth": 2, "heads": 2, "patch": 8}},
                         training={"epochs": 1, "batch_size": 50, "optimizer": "adam", "lr": 0.003,
                                   "momentum": 0.9, "weight_decay": 0.0, "schedule": "constant"},
                         extract={"split": "test", "chunk_rows": 50, "max_samples": 60})
    config["data"] = {DATA: {"n_train": 150, "n_test": 60}}
    config["lmc"] = {"alphas": 3, "variants": ["naive", "bn_reset", "permuted_weight", "repair"]}
    config["rotation"] = {"enabled": False}   # the architecture declares no rotation site
    config["measures"] = {"lasso_alphas": [0.0], "spectral_k": [2], "minimal_max_neurons": 2}
    return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("byo")
    config = byo_config()
    write_config(workdir, config)
    old_mask, old_path = os.umask(0o022), os.environ.get("PYTHONPATH")
    # the jobs import tests.models_vit and tests.datasets_byo: the repository must be on the path
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), old_path) if p)
    try:
        run_snakemake(workdir)
    finally:
        os.umask(old_mask)
        if old_path is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = old_path
    return workdir, config, plan_sweep(config)


def test_every_named_layer_gets_finite_cross_seed_cka_and_matching(finished):
    workdir, config, sweep = finished
    assert sweep.experiments[0].layers == LAYERS
    table = pd.read_csv(workdir / "results/summary/measures.csv")
    cross = table[table["control"] == "cross"]
    n_pairs = sum(p.control == "cross" for p in sweep.pairs())
    assert n_pairs == 2 * 3   # two frozen_k × three seed pairs
    for measure in ("cka_linear", "hungarian_mean_corr"):
        got = cross[cross["measure"] == measure]
        assert len(got) == n_pairs * len(LAYERS), measure
        assert set(got["layer"]) == set(LAYERS)
        assert np.isfinite(got["value"]).all(), got[~np.isfinite(got["value"])][["layer", "note"]]
    runs = pd.read_csv(workdir / "results/summary/runs.csv")
    assert set(runs["arch"]) == {ARCH} and set(runs["dataset"]) == {DATA}


def test_tokens_layers_are_stored_units_by_tokens(finished):
    from convergent.activations import ActivationStore

    workdir, _, _ = finished
    store = ActivationStore(workdir / "results/runs" / DATA / ARCH / "w8/f0/s0/trained.zarr")
    assert store.layers == LAYERS
    # 32×32 images in 8-pixel patches: 16 patches and the class token; width 8 units
    assert store.raw("encoder.layers.encoder_layer_0").shape == (60, 8, 17)
    assert store.raw("encoder.layers.encoder_layer_0").attrs["kind"] == "tokens"
    assert store.raw("conv_proj").shape == (60, 8, 4, 4)
    assert store.view_shape("encoder.layers.encoder_layer_1", "positions") == (60 * 17, 8)   # tokens view
    assert store.view_shape("encoder.layers.encoder_layer_1", "pool") == (60, 8)              # mean over tokens


def test_frozen_run_keeps_the_reference_prefix(finished):
    from convergent.nets.train import load_state

    workdir, _, _ = finished
    base = workdir / "results/runs" / DATA / ARCH / "w8"
    ref, frozen, free = (load_state(base / f"f{k}/s{s}/model.pt") for k, s in ((0, 0), (1, 1), (0, 1)))
    # frozen_k = 1 freezes the patch embedding (conv_proj) at the reference seed's trained weights
    assert all(ref[k].equal(frozen[k]) for k in ("net.conv_proj.weight", "net.conv_proj.bias"))
    assert not ref["net.conv_proj.weight"].equal(free["net.conv_proj.weight"])
    assert not ref["net.class_token"].equal(frozen["net.class_token"])   # not computing conv_proj: trained


def test_lmc_naive_runs_and_the_rest_say_not_applicable(finished):
    workdir, _, _ = finished
    lmc = pd.read_csv(workdir / "results/summary/lmc.csv")
    naive = lmc[lmc["variant"] == "naive"]
    assert len(naive) and naive["applicable"].all()
    assert np.isfinite(naive[["loss_barrier", "error_barrier"]]).all().all()
    others = lmc[lmc["variant"] != "naive"]
    assert set(others["variant"]) == {"bn_reset", "permuted_weight", "repair"}
    assert not others["applicable"].any() and others["loss_barrier"].isna().all()


def test_findings_and_no_rotation(finished):
    workdir, _, _ = finished
    assert (workdir / "results/summary/findings.md").stat().st_size > 0
    assert not (workdir / "results/rotation").exists()


def test_every_result_file_is_readable_by_the_group(finished):
    workdir, _, _ = finished
    files = [p for p in (workdir / "results").rglob("*") if p.is_file()]
    assert len(files) > 100
    modes = {oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert modes == {"0o644"}, sorted((oct(stat.S_IMODE(p.stat().st_mode)), str(p)) for p in files
                                      if stat.S_IMODE(p.stat().st_mode) != 0o644)[:5]
