"""The comparison groups (convergent.sweep.PairGroup): one job per (cell, seed) instead of per pair,
and a new seed adds groups without changing the existing ones."""

from __future__ import annotations

import copy

from convergent.sweep import LMC_CONTROLS, plan_sweep
from tests.workflow import tiny_config


def _sweep(seeds, data_order=True):
    config = copy.deepcopy(tiny_config(seeds=seeds))
    config["controls"]["data_order"] = data_order
    return plan_sweep(config)


def test_every_pair_is_in_exactly_one_group_of_its_cell():
    sweep = _sweep([0, 1, 2, 3])
    groups = sweep.pair_groups()
    members = [p for g in groups for p in g.pairs]
    assert sorted(members) == sorted(sweep.pairs()) and len(set(members)) == len(members)
    for g in groups:
        assert {(p.dataset, p.arch, p.width, p.frozen_k) for p in g.pairs} == {(g.dataset, g.arch, g.width, g.frozen_k)}
        assert {p.group_seed for p in g.pairs} == {g.seed}
        assert g.lmc_pairs() == tuple(p for p in g.pairs if p.control in LMC_CONTROLS)
    # 4 seeds: one group per seed and cell (seed 0, the reference, holds the ceiling pair alone)
    cells = {(g.dataset, g.arch, g.width, g.frozen_k) for g in groups}
    assert len(groups) == 4 * len(cells)


def test_a_seeds_group_holds_its_pairs_with_every_earlier_seed():
    sweep = _sweep([0, 1, 2, 3])
    g = next(g for g in sweep.pair_groups() if g.seed == 2)
    assert sorted(p.key for p in g.pairs) == ["cross/s0-s2", "cross/s1-s2", "data_order/s0-s0o2",
                                              "floor/s0-s2", "floor/s1-s2"]
    assert sorted(p.key for p in g.lmc_pairs()) == ["cross/s0-s2", "cross/s1-s2", "data_order/s0-s0o2"]
    ref = next(g for g in sweep.pair_groups() if g.seed == 0 and g.frozen_k == 0)
    assert [p.key for p in ref.pairs] == ["ceiling/s0-s0"] and ref.lmc_pairs() == ()
    assert g.path.endswith("/s2") and g.path.startswith("pairs/") and g.lmc_path.startswith("lmc/")
    assert {r.path.rsplit("/", 1)[1] for r in g.runs()} == {"s0", "s1", "s2", "s0o2"}


def test_adding_a_later_seed_leaves_every_existing_group_as_it_was():
    before = {(g.path, g.pairs) for g in _sweep([0, 1, 2]).pair_groups()}
    after = {(g.path, g.pairs) for g in _sweep([0, 1, 2, 3]).pair_groups()}
    assert before < after
    assert {path.rsplit("/", 1)[1] for path, _ in after - before} == {"s3"}


def test_inserting_a_seed_below_changes_only_the_later_seeds_groups():
    before = {g.path: g.pairs for g in _sweep([0, 2]).pair_groups()}
    after = {g.path: g.pairs for g in _sweep([0, 1, 2]).pair_groups()}
    changed = {path.rsplit("/", 1)[1] for path in after if before.get(path) != after[path]}
    assert changed == {"s1", "s2"}   # s1 is new, s2 gains its pairs with seed 1; s0 is untouched
