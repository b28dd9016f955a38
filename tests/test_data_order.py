"""The data-order control: same initial weights, another minibatch order (Frankle et al. 2020)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from convergent.jobs import complete_pair_columns, runs_table, train_job
from convergent.sweep import Pair, Run, parse_run_label, plan_sweep


def _train(tmp: Path, tag: str, seed: int, order_seed: int | None) -> dict[str, Path]:
    settings = {"model": {"depth": 2}, "training": {"epochs": 2, "batch_size": 64},
                "frozen_from": "trained", "reference_seed": 0}
    out = {name: tmp / tag / f"{name}" for name in ("model.pt", "init.pt", "log.csv", "metrics.json")}
    train_job(run=Run("digits", "mlp", 8, 0, seed, order_seed),
              settings=settings, reference=None, data_dir=str(tmp / "data"), download=False, device="cpu",
              threads=1,
              out_model=str(out["model.pt"]), out_init=str(out["init.pt"]), out_log_csv=str(out["log.csv"]),
              out_metrics=str(out["metrics.json"]))
    return out


def test_same_init_other_order_gives_other_weights_same_order_gives_same_bytes(tmp_path):
    ref = _train(tmp_path, "s0", 0, None)           # an ordinary run: order seed = seed
    again = _train(tmp_path, "s0o0", 0, 0)           # order seed named explicitly, equal to the seed
    other = _train(tmp_path, "s0o1", 0, 1)           # the reference's init, seed 1's minibatch order
    other2 = _train(tmp_path, "s0o1_again", 0, 1)
    seed1 = _train(tmp_path, "s1", 1, None)
    read = lambda p: p.read_bytes()  # noqa: E731
    # the initial weights are the seed's, whatever the order
    assert read(ref["init.pt"]) == read(other["init.pt"]) == read(again["init.pt"])
    assert read(ref["init.pt"]) != read(seed1["init.pt"])
    # the same order seed gives identical bytes; another order seed gives other weights
    assert read(ref["model.pt"]) == read(again["model.pt"])
    assert read(other["model.pt"]) == read(other2["model.pt"])
    a, b = torch.load(ref["model.pt"]), torch.load(other["model.pt"])
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert diff > 1e-3, diff
    m_ref, m_other = (json.loads(p["metrics.json"].read_text()) for p in (ref, other))
    assert (m_ref["seed"], m_ref["order_seed"]) == (0, 0)
    assert (m_other["seed"], m_other["order_seed"]) == (0, 1)
    table = runs_table([ref["metrics.json"], other["metrics.json"]])
    assert list(table.columns[:6]) == ["dataset", "arch", "width", "frozen_k", "seed", "order_seed"]
    assert table["order_seed"].tolist() == [0, 1]


def _config(controls: dict) -> dict:
    return {"sweep": {"datasets": ["digits"], "archs": ["mlp"], "widths": [8, 16], "frozen_k": [0, 1],
                      "seeds": [0, 1, 2], "reference_seed": 0, "model": {"mlp": {"depth": 2}}},
            "controls": controls}


def test_default_sweep_paths_are_unchanged_and_the_control_adds_its_own():
    off, on = plan_sweep(_config({})), plan_sweep(_config({"data_order": True}))
    assert "data_order" not in off.controls and "data_order" in on.controls
    assert Run("digits", "mlp", 8, 0, 1).path == "runs/digits/mlp/w8/f0/s1"
    assert Run("digits", "mlp", 8, 0, 1, 1) == Run("digits", "mlp", 8, 0, 1)
    assert Pair("digits", "mlp", 8, 0, "cross", 0, 1).path == "pairs/digits/mlp/w8/f0/cross/s0-s1"
    # turning the control on adds runs and pairs; it changes none of the others
    assert set(off.runs()) < set(on.runs()) and set(off.pairs()) < set(on.pairs())
    new_runs = sorted(set(on.runs()) - set(off.runs()))
    assert [r.path for r in new_runs if r.width == 8] == [
        "runs/digits/mlp/w8/f0/s0o1", "runs/digits/mlp/w8/f0/s0o2",
        "runs/digits/mlp/w8/f1/s0o1", "runs/digits/mlp/w8/f1/s0o2"]
    order_pairs = [p for p in on.pairs() if p.control == "data_order"]
    assert len(order_pairs) == 2 * 2 * 2          # widths × frozen_k × (seeds − 1)
    p = order_pairs[0]
    assert (p.seed_a, p.seed_b, p.order_seed_a, p.order_seed_b) == (0, 0, 0, 1)
    assert p.path == "pairs/digits/mlp/w8/f0/data_order/s0-s0o1"
    assert [r.path for r in p.runs()] == ["runs/digits/mlp/w8/f0/s0", "runs/digits/mlp/w8/f0/s0o1"]
    assert parse_run_label("0o1") == (0, 1) and parse_run_label("3") == (3, 3)


def test_pair_tables_get_order_seeds_and_control():
    lmc = pd.DataFrame({"dataset": ["d"], "arch": ["mlp"], "width": [8], "frozen_k": [0], "seed_a": [0],
                        "seed_b": [1], "variant": ["naive"]})
    done = complete_pair_columns(lmc)
    assert list(done.columns) == ["dataset", "arch", "width", "frozen_k", "seed_a", "seed_b", "control",
                                  "order_seed_a", "order_seed_b", "variant"]
    assert done[["control", "order_seed_a", "order_seed_b"]].iloc[0].tolist() == ["cross", 0, 1]
    measures = pd.DataFrame({"control": ["data_order"], "seed_a": [0], "seed_b": [0], "order_seed_a": [0],
                             "order_seed_b": [2], "value": [0.5]})
    pd.testing.assert_frame_equal(complete_pair_columns(measures), measures)
    rotation = pd.DataFrame({"arch": ["mlp"], "seed": [3], "layer": ["fc1"]})
    assert list(complete_pair_columns(rotation).columns) == ["arch", "seed", "order_seed", "layer"]
    assert complete_pair_columns(rotation)["order_seed"].tolist() == [3]
    other = pd.DataFrame({"rule": ["train"]})
    assert complete_pair_columns(other) is other
