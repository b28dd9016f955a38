"""Dead and chance-level networks never pass silently.

* a run at chance accuracy is flagged in runs.csv (``at_chance``), the findings leave its pairs
  out and say so, the figures mark it;
* a control that fails to train (the rotation test's linear network) is reported as failed in
  its table without taking the ReLU rows down;
* a diverging training names the setting to lower.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from convergent import findings as F
from convergent.io import write_json
from convergent.jobs import at_chance, failed_control_rows, runs_table


def _metrics(tmp_path, name, acc, classes=10):
    path = tmp_path / f"{name}.json"
    write_json(path, {"dataset": "digits", "arch": "mlp", "width": 4, "frozen_k": 0, "seed": int(name[-1]),
                      "test_acc": acc, "num_classes": classes, "data": {"n_test": 300}})
    return path


def test_runs_table_flags_runs_at_chance(tmp_path):
    paths = [_metrics(tmp_path, "s0", 0.92), _metrics(tmp_path, "s1", 0.097), _metrics(tmp_path, "s2", 0.149)]
    table = runs_table(paths)
    assert table["at_chance"].tolist() == [False, True, True]      # 0.149 <= 1/10 + 0.05
    assert table["chance_acc"].tolist() == [0.1, 0.1, 0.1]
    assert runs_table(paths, chance_margin=0.0)["at_chance"].tolist() == [False, True, False]
    assert at_chance(float("nan"), 10) and not at_chance(0.6, 2, 0.05) and at_chance(0.55, 2, 0.05)


def _world_with_chance_run(seed=2):
    from tests.test_findings import make_world

    world = make_world(True)
    runs = world.runs.assign(at_chance=world.runs["seed"] == seed)
    return F.Tables(runs=runs, measures=world.measures, lmc=world.lmc, rotation=world.rotation,
                    cka_layers=world.cka_layers)


def test_findings_exclude_pairs_of_runs_at_chance_and_say_so():
    tables = _world_with_chance_run(seed=2)
    kept, note = F.exclude_at_chance(tables)
    m = kept.measures
    trained = m[m["control"] != "floor"]
    assert not ((trained["seed_a"] == 2) | (trained["seed_b"] == 2)).any()
    # floor pairs compare untrained networks: they stay
    floor = m[m["control"] == "floor"]
    assert ((floor["seed_a"] == 2) | (floor["seed_b"] == 2)).any()
    assert not ((kept.lmc["seed_a"] == 2) | (kept.lmc["seed_b"] == 2)).any()
    assert "at chance" in note and "toy/cnn w8 f0 s2" in note
    full, flagged = F.findings_table(F.Tables(**{**tables.__dict__, "runs": tables.runs.assign(at_chance=False)})), \
        F.findings_table(tables)
    # 3 seeds give 3 pairs; without seed 2 one pair is left: every per-pair statistic loses n
    per_pair = full["resampled"].str.startswith("seeds") & (full["verdict"] != F.NOT_TESTABLE)
    assert per_pair.sum() >= 8
    assert (flagged.loc[per_pair, "n"] < full.loc[per_pair, "n"]).all()
    # the cross pairs are left with 2 seeds: no interval over seeds (issue 21), and the reason says so
    assert flagged.loc[per_pair & (full["finding"] != "brown_b"), "reason"].str.contains("2 seeds").all()
    md = F.to_markdown(flagged, tables)
    assert "Excluded:" in md and "at chance test accuracy" in md
    assert "Excluded" not in F.to_markdown(full, F.Tables(**{**tables.__dict__,
                                                             "runs": tables.runs.assign(at_chance=False)}))


def test_figures_mark_runs_at_chance():
    import matplotlib.pyplot as plt

    from convergent.figures.experiment import Tables as FigTables, chance_note, draw_figure
    from tests.test_figures import synthetic_measures, synthetic_runs

    runs = synthetic_runs()
    assert chance_note(runs) == ""
    runs = runs.assign(at_chance=runs["seed"] == runs["seed"].max())
    note = chance_note(runs)
    assert note.startswith("Warning:") and "at chance" in note
    fig = draw_figure("matched_vs_layer", FigTables(measures=synthetic_measures(), runs=runs), "toy", "mlp")
    assert any("at chance" in t.get_text() for t in fig.texts)
    plt.close("all")


def test_failed_control_rows_keep_coordinates_and_say_why():
    relu = [{"dataset": "digits", "layer": "fc1", "strength": 0.5, "linear": False, "retrained_test_acc": 0.9,
             "original_test_loss": 0.2, "units": 4}]
    rows = failed_control_rows(relu, "linear control failed to train: boom")
    assert rows[0]["linear"] is True and rows[0]["status"] == "failed" and "boom" in rows[0]["note"]
    assert math.isnan(rows[0]["retrained_test_acc"]) and math.isnan(rows[0]["original_test_loss"])
    assert rows[0]["layer"] == "fc1" and rows[0]["strength"] == 0.5 and rows[0]["units"] == 4


SETTINGS = {"model": {"depth": 2}, "training": {"epochs": 1, "batch_size": 64, "lr": 0.05, "momentum": 0.9,
                                                 "weight_decay": 0.0, "schedule": "constant"},
            "frozen_from": "trained", "reference_seed": 0}
RUN = {"dataset": "digits", "arch": "mlp", "width": 4, "frozen_k": 0, "seed": 0}


def _train(tmp_path, settings):
    from convergent.jobs import train_job

    out = tmp_path / "run"
    return train_job(run=RUN, settings=settings, reference=None, data_dir=str(tmp_path / "data"), download=False,
                     device="cpu", threads=1, out_model=str(out / "model.pt"), out_init=str(out / "init.pt"),
                     out_log_csv=str(out / "log.csv"), out_metrics=str(out / "metrics.json"))


def test_diverging_training_names_the_setting_to_lower(tmp_path):
    # a linear network (no ReLU to die) diverges at this lr; a ReLU one may just die (see at_chance)
    settings = {**SETTINGS, "model": {"depth": 2, "linear": True}, "training": {**SETTINGS["training"], "lr": 1e6}}
    with pytest.raises(FloatingPointError, match=r"non-finite loss at epoch 1.*training\.lr = 1e\+06: lower it "
                                                 r"\(config key sweep\.training\.lr"):
        _train(tmp_path, settings)


def test_diverging_rotation_retraining_names_rotation_lr(tmp_path):
    from convergent.jobs import rotation_job

    _train(tmp_path, SETTINGS)
    with pytest.raises(FloatingPointError, match=r"Retraining a rotated network diverged at rotation\.lr = 1e\+06: "
                                                 r"lower it \(config key rotation\.lr\)"):
        rotation_job(run=RUN, settings=SETTINGS, checkpoint=str(tmp_path / "run" / "model.pt"),
                     params={"layers": ["fc1"], "strengths": [1.0], "retrain_epochs": 1, "lr": 1e6},
                     data_dir=str(tmp_path / "data"), device="cpu", threads=1, out_csv=str(tmp_path / "rot.csv"))
    assert not (tmp_path / "rot.csv").exists()


def test_rotation_job_reports_a_diverging_linear_control_as_failed(tmp_path):
    from convergent.jobs import rotation_job

    metrics = _train(tmp_path, SETTINGS)
    assert metrics["num_classes"] == 10
    # the sweep's lr is fine for the ReLU net here, but the linear control (no nonlinearity to
    # bound it) diverges at it: emulate with a huge lr for the control's training only
    settings = {**SETTINGS, "training": {**SETTINGS["training"], "lr": 1e4}}
    out = tmp_path / "rotation.csv"
    table = rotation_job(run=RUN, settings=settings, checkpoint=str(tmp_path / "run" / "model.pt"),
                         params={"layers": ["fc1"], "strengths": [0.0, 1.0], "retrain_epochs": 1, "lr": 0.01},
                         data_dir=str(tmp_path / "data"), device="cpu", threads=1, out_csv=str(out))
    written = pd.read_csv(out)
    assert set(written.columns) >= {"status", "note"}
    relu, linear = written[~written["linear"]], written[written["linear"]]
    assert len(relu) == len(linear) == 2
    assert (relu["status"] == "ok").all() and relu["retrained_test_acc"].notna().all()
    assert (linear["status"] == "failed").all() and linear["retrained_test_acc"].isna().all()
    assert linear["note"].str.contains("linear control failed to train: non-finite loss").all()
    assert linear["note"].str.contains("training.lr").all()
    assert list(table.columns) == list(written.columns)
    # the findings and the rotation figure take the failed rows without breaking
    from convergent.figures.style import Palette
    from convergent.figures.weights import rotation

    rotation(written.assign(dataset="digits"), Palette.from_tables(written))
    tables = F.Tables(rotation=written)
    row = F.evaluate(next(f for f in F.FINDINGS if f.id == "brown_a"), tables, "digits", "mlp")
    assert row["verdict"] == F.NOT_TESTABLE


def test_a_data_order_run_at_chance_takes_out_its_own_pair_only():
    """Runs are (cell, seed, order seed): the data-order run s0o2 at chance leaves out the data-order
    pair s0-s0o2, and keeps the cross pairs of the reference seed 0 (its seed, another order)."""
    from tests.test_findings import make_world

    world = make_world(True)
    ref = world.measures[world.measures["control"] == "data_order"]["seed_a"].iloc[0]
    order = world.measures[world.measures["control"] == "data_order"]["order_seed_b"].max()
    runs = world.runs.assign(order_seed=world.runs["seed"], at_chance=False)
    cell = runs[runs["seed"] == ref].iloc[[0]]
    order_run = cell.assign(order_seed=order, at_chance=True)
    tables = F.Tables(runs=pd.concat([runs, order_run], ignore_index=True), measures=world.measures,
                      lmc=world.lmc, rotation=world.rotation, cka_layers=world.cka_layers)
    kept, note = F.exclude_at_chance(tables)
    m, before = kept.measures, world.measures
    on_cell = np.ones(len(m), dtype=bool)
    for key in ("dataset", "arch", "width", "frozen_k"):
        on_cell &= (m[key] == cell[key].iloc[0]).to_numpy()
    gone = before.merge(m, how="left", indicator=True)["_merge"].eq("left_only").to_numpy()
    dropped = before[gone]
    assert len(dropped) and (dropped["control"] == "data_order").all() and (dropped["order_seed_b"] == order).all()
    assert ((m["control"] == "cross") & ((m["seed_a"] == ref) | (m["seed_b"] == ref)) & on_cell).any()
    assert f"s{ref}o{order}" in note and "1 network(s)" in note
    # the reference run itself at chance takes out its data-order pairs too (it is their side a)
    ref_bad = F.Tables(**{**tables.__dict__, "runs": pd.concat([runs.assign(at_chance=runs["seed"] == ref)],
                                                                ignore_index=True)})
    kept_ref, _ = F.exclude_at_chance(ref_bad)
    assert not ((kept_ref.measures["control"] == "data_order")).any()
