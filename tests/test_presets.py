"""The paper presets under configs/: each is valid, plans with a real dry run, and touches no data.

Full-size presets (CIFAR-10) need the data only when jobs run; each has a laptop-sized
variant on shapes32 that asks the same questions (same architecture, stages and views).
"""

from __future__ import annotations

import copy
import math

import pytest
import yaml

from convergent.config import load_sweep
from tests.workflow import REPO, dry_run_counts

PAPERS = ("brown", "li", "kornblith")
PRESETS = [name for paper in PAPERS for name in (paper, f"{paper}-small")]


def load(name: str) -> dict:
    return yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())


def planned(name: str):
    """(validated config with the schema's defaults, planned sweep) of a preset."""
    config = copy.deepcopy(load(name))
    return config, load_sweep(config)


def test_every_preset_has_a_small_variant_and_nothing_else_is_there():
    assert sorted(p.stem for p in (REPO / "configs").glob("*.yaml")) == sorted(PRESETS)


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("presets")
    return root, dry_run_counts({name: load(name) for name in PRESETS}, root)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_dry_run_plans_every_stage_and_touches_no_data(name, dry_runs):
    root, counts = dry_runs
    config, sweep = planned(name)
    jobs = counts[name]
    n_runs = len(sweep.runs())
    assert jobs["train"] + jobs.get("train_order", 0) == jobs["extract"] + jobs.get("extract_order", 0) == n_runs
    assert jobs.get("train_order", 0) == sum(1 for r in sweep.runs() if r.order_seed != r.seed)
    groups = sweep.pair_groups()
    assert jobs["moments"] == jobs["measures"] == len(groups)
    assert sorted(p for g in groups for p in g.pairs) == sorted(sweep.pairs())
    assert jobs["cka_layers"] == sum(len(e.widths) * len(e.frozen_k) * math.comb(min(len(e.seeds), 3), 2)
                                     for e in sweep.experiments)
    lmc_groups = [g for g in groups if g.lmc_pairs()]
    assert jobs.get("lmc", 0) == (len(lmc_groups) if config["lmc"]["enabled"] else 0)
    assert jobs.get("rotation", 0) == (sum(len(e.widths) for e in sweep.experiments)
                                       if config["rotation"]["enabled"] else 0)
    for rule in ("runs_table", "measures_table", "figures", "findings", "runtime_table", "all"):
        assert jobs[rule] == 1, rule
    # planning reads no data: neither data_dir nor any result was created
    assert sorted(p.name for p in (root / name).iterdir() if p.name != ".snakemake") == ["config.yaml"]


@pytest.mark.parametrize("paper", PAPERS)
def test_small_variant_asks_the_same_questions_on_shapes32(paper):
    full, full_sweep = planned(paper)
    small, small_sweep = planned(f"{paper}-small")
    assert full["sweep"]["datasets"] == ["cifar10"] and small["sweep"]["datasets"] == ["shapes32"]
    assert full["sweep"]["archs"] == small["sweep"]["archs"]
    for key in ("lmc", "rotation"):
        assert full[key]["enabled"] == small[key]["enabled"], key
    assert full["measures"].get("views") == small["measures"].get("views")
    assert (len(full["sweep"]["widths"]) > 1) == (len(small["sweep"]["widths"]) > 1)
    assert (len(full["sweep"]["frozen_k"]) > 1) == (len(small["sweep"]["frozen_k"]) > 1)
    for f, s in zip(full_sweep.experiments, small_sweep.experiments):
        assert set(f.model) == set(s.model)   # the same architecture options, smaller values allowed
    # laptop-sized: a few thousand images, a few epochs, a dozen networks at most
    assert small["data"]["shapes32"]["n_train"] <= 4000
    assert small["sweep"]["training"]["epochs"] <= 4
    assert sum(1 for r in small_sweep.runs() if r.order_seed == r.seed) <= 12   # + their data-order twins


@pytest.mark.parametrize("name", PRESETS)
def test_preset_runs_as_written_when_merged_over_config_yaml(name):
    """``snakemake --configfile configs/<preset>.yaml`` extends the workflow's config.yaml
    (Snakemake's update_config): a key the preset omits would take the default's value (the
    default turns the data-order control on). Every preset states what it plans, so the sweep
    Snakemake runs is the one the preset's own file, its tests and bench_presets.py plan."""
    from snakemake.utils import update_config

    merged = yaml.safe_load((REPO / "config.yaml").read_text())
    update_config(merged, load(name))
    alone, with_default = planned(name)[1], load_sweep(merged)
    assert alone.runs() == with_default.runs()
    assert sorted(alone.pairs()) == sorted(with_default.pairs())
    # every planned setting too (experiments with their training, extract, model options; the
    # moments, measures, LMC, rotation and cka_layers settings)
    assert [k for k in vars(alone) if getattr(alone, k) != getattr(with_default, k)] == []
    assert "data_order" in alone.controls


def test_full_presets_are_paper_sized():
    brown, sweep = planned("brown")
    assert sweep.experiments[0].arch == "wrn" and len(brown["sweep"]["widths"]) >= 3
    assert len(brown["sweep"]["seeds"]) >= 5 and max(brown["sweep"]["frozen_k"]) > 0
    assert brown["lmc"]["enabled"] and brown["rotation"]["enabled"]
    li, _ = planned("li")
    assert li["measures"]["views"]["matching"] == "positions" and li["sweep"]["model"]["cnn"]["depth"] == 5
    kornblith, sweep = planned("kornblith")
    assert len(kornblith["sweep"]["seeds"]) == 10 and kornblith["sweep"]["model"]["cnn"]["depth"] == 8
    assert kornblith["measures"]["views"]["cka"] == "flatten"
