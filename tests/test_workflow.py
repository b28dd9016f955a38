"""End to end: the real `snakemake` on a tiny sweep in a temporary directory."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from convergent.activations import ActivationStore, ActivationStoreWriter, IncompleteStoreError
from convergent.figures import FIGURE_NAMES
from convergent.sweep import plan_sweep
from tests.workflow import planned_jobs, run_snakemake, write_config
from tests.workflow import tiny_config as _tiny_config

pytestmark = pytest.mark.slow


def tiny_config(**sweep_changes):
    """The tiny sweep with the data-order control on: one order-seed run per cell (seeds [0, 1]),
    so its rules (train_order, extract_order) and its pairs in moments, measures and lmc run end
    to end here."""
    config = _tiny_config(**sweep_changes)
    config["controls"]["data_order"] = True
    return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny sweep: (workdir, config, planned sweep)."""
    workdir = tmp_path_factory.mktemp("sweep")
    config = tiny_config()
    write_config(workdir, config)
    proc = run_snakemake(workdir)
    (workdir / "snakemake.out").write_text(proc.stdout + proc.stderr)   # read by the tests of its messages
    return workdir, config, plan_sweep(config)


def test_a_sweep_prints_no_zarr_warning(finished):
    """Snakemake's .snakemake_timestamp marker inside every store made zarr warn on every open."""
    workdir, _, _ = finished
    assert list((workdir / "results" / "runs").rglob(".snakemake_timestamp"))   # the markers are there
    out = (workdir / "snakemake.out").read_text()
    logs = [p.read_text() for p in (workdir / "results" / "logs").rglob("*.log")]
    assert "Finished job" in out and "ZarrUserWarning" not in out
    assert logs and not [text for text in logs if "ZarrUserWarning" in text]


def test_every_run_has_checkpoints_logs_and_metrics(finished):
    workdir, config, sweep = finished
    for run in sweep.runs():
        d = workdir / "results" / run.path
        for name in ("model.pt", "init.pt", "train_log.csv", "metrics.json"):
            assert (d / name).stat().st_size > 0, d / name
        assert not (d / "resume.pt").exists()
        log = pd.read_csv(d / "train_log.csv")
        assert len(log) == config["sweep"]["training"]["epochs"]
        metrics = json.loads((d / "metrics.json").read_text())
        assert 0.0 <= metrics["test_acc"] <= 1.0
        for state in ("trained", "init"):
            store = ActivationStore(d / f"{state}.zarr")
            exp = sweep.experiment(run.dataset, run.arch)
            assert store.layers == exp.layers
            assert store.n_images == config["sweep"]["extract"]["max_samples"]


def test_runs_table_reports_accuracy(finished):
    workdir, config, sweep = finished
    runs = pd.read_csv(workdir / "results/summary/runs.csv")
    assert len(runs) == len(sweep.runs())
    assert {"dataset", "arch", "width", "frozen_k", "seed", "order_seed", "test_acc", "train_acc"} <= set(runs.columns)
    # the data-order runs: the reference seed's init, another seed's minibatch order
    order = runs[runs["order_seed"] != runs["seed"]]
    assert len(order) == sum(p.control == "data_order" for p in sweep.pairs()) > 0
    assert (order["seed"] == config["sweep"]["reference_seed"]).all()
    assert runs["test_acc"].between(0, 1).all()


def test_measures_table_is_tidy_and_complete(finished):
    workdir, config, sweep = finished
    table = pd.read_csv(workdir / "results/summary/measures.csv")
    coords = ["dataset", "arch", "width", "frozen_k", "control", "seed_a", "seed_b", "order_seed_a",
              "order_seed_b", "layer"]
    assert set(coords + ["measure", "view", "parameter", "parameter_value", "value"]) <= set(table.columns)
    assert len(table.groupby(coords)) == len(sweep.pair_layers())
    for measure in ("cka_linear", "hungarian_mean_corr"):
        rows = table[table["measure"] == measure]
        assert len(rows) == len(sweep.pair_layers()), measure
        assert np.isfinite(rows["value"]).all()
        assert rows["value"].between(-1e-9, 1 + 1e-9).all()
    order = table[(table["control"] == "data_order") & (table["measure"] == "hungarian_mean_corr")]
    assert len(order) and (order["order_seed_b"] != order["seed_b"]).all() and (order["value"] < 1 - 1e-6).any()
    ceiling = table[(table["control"] == "ceiling") & (table["measure"] == "cka_linear")]
    np.testing.assert_allclose(ceiling["value"], 1.0, atol=1e-9)
    # frozen layers are identical across seeds: layer 1 of a frozen_k=1 cross pair matches exactly
    frozen = table[(table["frozen_k"] == 1) & (table["control"] == "cross") & (table["layer_index"] == 1)
                   & (table["measure"] == "hungarian_mean_corr")]
    assert len(frozen) and np.allclose(frozen["value"], 1.0, atol=1e-6)


def test_figures_logs_and_benchmarks_exist(finished):
    workdir, config, sweep = finished
    figures = sorted((workdir / "results/figures").glob("*.png"))
    assert len(figures) == len(FIGURE_NAMES) * len(sweep.experiments)
    assert len(list((workdir / "results/figures").glob("*.svg"))) == len(figures)
    for fig in figures:
        assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    logs = list((workdir / "results/logs").rglob("*.log"))
    bench = list((workdir / "results/benchmarks").rglob("*.tsv"))
    groups = sweep.pair_groups()   # one moments and one measures job per group, and an LMC job if it has a pair for it
    n_lmc = sum(bool(g.lmc_pairs()) for g in groups)
    n_rotation = sum(len(e.widths) for e in sweep.experiments)
    n_cells = sum(len(e.widths) * len(e.frozen_k) * math.comb(min(len(e.seeds), 3), 2) for e in sweep.experiments)
    # + one cross-layer CKA job per pair of the first three seeds and cell; runs/measures/lmc/rotation/
    # cka_layers/layer_identification tables;
    # figures per experiment
    # + findings (log and benchmark) and runtime_table (a log; it reads the benchmarks, so has none)
    n_jobs = (len(sweep.runs()) * 2 + 2 * len(groups) + n_lmc + n_rotation + n_cells + 6
              + len(sweep.experiments) + 1)
    assert len(logs) == n_jobs + 1 and len(bench) == n_jobs
    train_log = next((workdir / "results/logs/train").rglob("*.log")).read_text()
    assert "epoch" in train_log
    assert not list((workdir / "results").rglob("*.tmp*")), "temporary files left behind"


def test_lmc_table(finished):
    workdir, config, sweep = finished
    lmc = pd.read_csv(workdir / "results/summary/lmc.csv")
    n_cross = sum(p.control == "cross" for p in sweep.pairs())
    n_order = sum(p.control == "data_order" for p in sweep.pairs())
    assert len(lmc.groupby(["arch", "width", "frozen_k", "control", "seed_a", "seed_b", "order_seed_b"])) \
        == n_cross + n_order
    assert (lmc["control"] == "data_order").sum() and (lmc.loc[lmc["control"] == "data_order", "order_seed_b"]
                                                       != lmc.loc[lmc["control"] == "data_order", "seed_b"]).all()
    applicable = lmc[lmc["applicable"]]
    assert np.isfinite(applicable[["loss_barrier", "error_barrier"]]).all().all()
    # an mlp has no BatchNorm: its bn_reset rows say so instead of inventing numbers
    assert not lmc[(lmc["arch"] == "mlp") & (lmc["variant"] == "bn_reset")]["applicable"].any()
    assert lmc[(lmc["arch"] == "cnn") & (lmc["variant"] == "bn_reset")]["applicable"].all()


def test_rotation_table(finished):
    workdir, config, sweep = finished
    rot = pd.read_csv(workdir / "results/summary/rotation.csv")
    layers = sum(len(e.layers) * len(e.widths) for e in sweep.experiments)
    assert len(rot) == layers * 2 * len(config["rotation"]["strengths"])  # relu and linear control
    identity = rot[rot["strength"] == 0]
    assert identity["rotation_identity"].all()
    np.testing.assert_allclose(identity["rotated_test_acc"], identity["original_test_acc"], atol=1e-12)


def test_second_run_does_nothing(finished):
    workdir, _, _ = finished
    proc = run_snakemake(workdir, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr
    before = {p: p.stat().st_mtime_ns for p in (workdir / "results").rglob("*") if p.is_file()}
    proc = run_snakemake(workdir)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    after = {p: p.stat().st_mtime_ns for p in (workdir / "results").rglob("*") if p.is_file()}
    assert before == after


def test_adding_a_seed_plans_only_the_new_run_and_its_group(finished):
    workdir, config, sweep = finished
    grown = tiny_config(seeds=[0, 1, 2])
    write_config(workdir, grown)
    try:
        jobs = planned_jobs(run_snakemake(workdir, "-n").stdout)
    finally:
        write_config(workdir, config)
    cells = len(sweep.experiments) * len(config["sweep"]["widths"]) * len(config["sweep"]["frozen_k"])
    # seed 2's group per cell: cross (0,2),(1,2), floor the same, data order (seed 0's init, seed 2's
    # order) -- one moments, one measures and one lmc job; seed 0's and 1's groups are untouched.
    # The third seed also joins the layer × layer table (pairs of the first three seeds): (0,2), (1,2)
    assert jobs == {
        "train": cells, "extract": cells, "train_order": cells, "extract_order": cells,
        "moments": cells, "measures": cells, "lmc": cells, "lmc_table": 1,
        "cka_layers": 2 * cells, "cka_layers_table": 1, "layer_identification": 1,
        "runs_table": 1, "measures_table": 1, "figures": len(sweep.experiments),
        "findings": 1, "runtime_table": 1, "all": 1,
    }


def test_changing_a_measure_parameter_reruns_only_measures(finished):
    workdir, config, sweep = finished
    changed = tiny_config()
    changed["measures"] = {"dead_tol": 1e-6}
    write_config(workdir, changed)
    try:
        jobs = planned_jobs(run_snakemake(workdir, "-n").stdout)
    finally:
        write_config(workdir, config)
    assert jobs == {"measures": len(sweep.pair_groups()), "measures_table": 1, "figures": len(sweep.experiments),
                    "findings": 1, "runtime_table": 1, "all": 1}


def test_an_interrupted_extract_leaves_nothing_trusted(finished, tmp_path):
    """An extract killed mid-write leaves only its temporary sibling; nothing trusts it."""
    workdir, config, sweep = finished
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy, symlinks=True)
    run = next(r for r in sweep.runs() if r.arch == "mlp")
    store = copy / "results" / run.path / "trained.zarr"
    shutil.rmtree(store)
    # what a writer killed half-way leaves behind: some chunks in its temporary directory
    writer = ActivationStoreWriter(store, n_samples=150, chunk_rows=64)
    writer.create("fc1", (4,))
    writer.append("fc1", np.ones((64, 4), dtype=np.float32))
    del writer
    leftovers = list(store.parent.glob(".trained.zarr.tmp-*"))
    assert len(leftovers) == 1 and not store.exists()
    with pytest.raises(IncompleteStoreError):
        ActivationStore(leftovers[0])
    target = f"results/{run.path}/trained.zarr"
    assert planned_jobs(run_snakemake(copy, "-n", target).stdout) == {"extract": 1}
    run_snakemake(copy, target)
    assert ActivationStore(store).layers == sweep.experiment(run.dataset, run.arch).layers
    assert not list(store.parent.glob(".trained.zarr.tmp-*"))


def _digest_tree(root: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """Bytes of the deterministic outputs under ``root`` (checkpoints, store chunks and metadata,
    moments, per-group measures), keyed by relative path; timing columns make the rest differ."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and "/." not in f"/{rel}" and (p.name in names or p.suffix in (".pt", ".npz")
                                                      or (".zarr/" in rel and "timestamp" not in p.name)):
            out[rel] = p.read_bytes()
    return out


def test_damage_is_found_by_check_and_rebuilt_byte_identical(finished, tmp_path, monkeypatch):
    """The issue's damage planted in a copy of a finished sweep -- a corrupt chunk, a truncated
    checkpoint, a deleted intermediate. A plain Snakemake rerun does not repair them;
    `make check` (convergent.check) finds all three, and its forcerun command rebuilds
    byte-identical results."""
    from convergent.check import rebuild_command, scrub

    workdir, config, sweep = finished
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy, symlinks=True)
    monkeypatch.chdir(copy)
    names = ("measures.csv", "model.pt.sha256", "init.pt.sha256")
    original = _digest_tree(copy / "results", names)
    assert scrub("results") == []
    run = next(r for r in sweep.runs() if r.arch == "mlp" and r.frozen_k == 1 and r.seed == 1)
    group = next(g for g in sweep.pair_groups() if g.arch == "mlp" and g.frozen_k == 1
                 and any(p.control == "floor" for p in g.pairs))

    chunk = copy / "results" / run.path / "trained.zarr" / "fc2" / "c" / "1" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    model = copy / "results" / run.path / "model.pt"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    (copy / "results" / group.path / "measures.csv").unlink()
    # Snakemake alone would keep the truncated checkpoint (no train job: it trusts files by
    # mtime; its newer mtime only re-extracts, which then fails on it) and skips the deleted
    # intermediate (its downstream exists)
    plain = planned_jobs(run_snakemake(copy, "-n").stdout)
    assert "train" not in plain
    damage = scrub("results")
    expected = {f"results/{run.path}/model.pt", f"results/{run.path}/trained.zarr/fc2/c/1/0",
                f"results/{group.path}/measures.csv"}
    assert {str(d.path) for d in damage} == expected
    forced = rebuild_command(damage).split("--forcerun ")[1].split()
    assert sorted(forced) == sorted([f"results/{run.path}/model.pt", f"results/{run.path}/trained.zarr",
                                     f"results/{group.path}/measures.csv"])
    run_snakemake(copy, "--forcerun", *forced)
    assert scrub("results") == []
    rebuilt = _digest_tree(copy / "results", names)
    assert rebuilt.keys() == original.keys()
    assert [k for k in original if rebuilt[k] != original[k]] == []
