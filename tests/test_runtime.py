"""The runtime table from synthetic Snakemake benchmark files and job logs; the progress logger."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from convergent.logs import progress
from convergent.logs import PHASES_PREFIX
from convergent.runtime import (COLUMNS, PHASE_COLUMNS, job_log, pattern_regex, read_benchmark, runtime_table,
                                to_html, to_markdown)

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def bench(path, *rows: tuple[float, object]) -> None:
    """A benchmark file in Snakemake's format: one line per repetition (seconds, max_rss)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{s}\t0:00:{int(s):02d}\t{rss}\t1.0\t1.0\t1.0\t0.0\t0.0\t10.0\t{s}\n" for s, rss in rows]
    path.write_text(HEADER + "".join(lines))


@pytest.fixture
def benchmarks(tmp_path):
    b = tmp_path / "results" / "benchmarks"
    bench(b / "train/digits/mlp/w16/f0/s0.tsv", (10.0, 800.5))
    bench(b / "train/digits/mlp/w16/f0/s1.tsv", (14.0, 820.0))
    bench(b / "train/digits/mlp/w32/f0/s0.tsv", (12.0, 790.0))
    bench(b / "moments/digits/mlp/w16/f0/cross/s0-s1.tsv", (1.0, 90.0), (3.0, 95.0))   # 2 repeats: mean 2 s
    bench(b / "aggregate/runs_table.tsv", (0.5, "NA"))                             # RSS not measured
    bench(b / "aggregate/figures/digits_mlp.tsv", (4.0, 130.0))
    return b


def test_runtime_table_by_layout(benchmarks):
    table = runtime_table(benchmarks)
    assert list(table.columns) == COLUMNS
    rows = table.set_index("rule")
    assert set(rows.index) == {"train", "moments", "runs_table", "aggregate"}   # figures/ is a subdirectory
    assert rows.loc["train", "jobs"] == 3
    assert rows.loc["train", "total_s"] == pytest.approx(36.0)
    assert rows.loc["train", "mean_s"] == pytest.approx(12.0)
    assert rows.loc["train", "max_s"] == pytest.approx(14.0)
    assert rows.loc["train", "max_rss_mb"] == pytest.approx(820.0)
    assert rows.loc["moments", "total_s"] == pytest.approx(2.0)     # repetitions are averaged
    assert np.isnan(rows.loc["runs_table", "max_rss_mb"])
    assert list(table["rule"])[0] == "train"                      # slowest first


def test_runtime_table_with_the_rules_patterns(benchmarks):
    patterns = {"train": "results/benchmarks/train/{dataset}/{arch}/w{width}/f{frozen}/s{seed}.tsv",
                "figures": "results/benchmarks/aggregate/figures/{dataset}_{arch}.tsv",
                "runs_table": "results/benchmarks/aggregate/runs_table.tsv"}
    rows = runtime_table(benchmarks, patterns).set_index("rule")
    assert set(rows.index) == {"train", "moments", "runs_table", "figures"}
    assert rows.loc["figures", "jobs"] == 1 and rows.loc["train", "jobs"] == 3


PATTERNS = {"train": "results/benchmarks/train/{dataset}/{arch}/w{width}/f{frozen}/s{seed}.tsv",
            "moments": "results/benchmarks/moments/{dataset}/{arch}/w{width}/f{frozen}/{control}/s{a}-s{b}.tsv",
            "figures": "results/benchmarks/aggregate/figures/{dataset}_{arch}.tsv",
            "runs_table": "results/benchmarks/aggregate/runs_table.tsv"}
LOG_PATTERNS = {"train": "results/logs/train/{dataset}/{arch}/w{width}/f{frozen}/s{seed}.log",
                "moments": "results/logs/moments/{dataset}/{arch}/w{width}/f{frozen}/{control}/s{a}-s{b}.log",
                "runs_table": "results/logs/aggregate/runs_table.log"}   # figures: no log pattern


def job_log_file(path, phases=None) -> None:
    """A job's log: a few lines, then (unless ``phases`` is None) the phase clock's last line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["2026-01-01 10:00:00 INFO training {'seed': 0}\n", "2026-01-01 10:00:04 INFO done\n"]
    if phases is not None:
        lines.append(f"2026-01-01 10:00:05 INFO {PHASES_PREFIX}{json.dumps(phases)}\n")
    path.write_text("".join(lines))


@pytest.fixture
def logs(benchmarks):
    """Logs beside the benchmark files: train s0 and s1 (w16) with phases, train w32 none at all,
    moments without the phase line (written before the phase clock), runs_table with phases."""
    root = benchmarks.parent / "logs"
    job_log_file(root / "train/digits/mlp/w16/f0/s0.log",      # bench 10 s: 0.9 s outside
                 {"startup": 1.0, "imports": 2.0, "data": 1.0, "model": 0.5, "compute": 4.0, "write": 0.5,
                  "other": 0.1})
    job_log_file(root / "train/digits/mlp/w16/f0/s1.log",      # bench 14 s, no write phase: 1.5 s outside
                 {"startup": 1.0, "imports": 2.0, "data": 1.5, "model": 0.0, "compute": 8.0, "other": 0.0})
    job_log_file(root / "moments/digits/mlp/w16/f0/cross/s0-s1.log")
    job_log_file(root / "aggregate/runs_table.log", {"startup": 0.2, "compute": 0.1, "write": 0.05, "other": 0.02})
    return root


def test_phases_are_read_from_each_jobs_log(logs, benchmarks):
    table = runtime_table(benchmarks, PATTERNS, LOG_PATTERNS)
    assert list(table.columns) == COLUMNS
    rows = table.set_index("rule")
    train = rows.loc["train"]
    assert train["jobs"] == 3 and train["phase_jobs"] == 2      # w32's log is missing: left out, not zero
    assert train["total_s"] == pytest.approx(36.0)              # the benchmark columns still count all 3
    assert train["startup_s"] == pytest.approx(1.0) and train["imports_s"] == pytest.approx(2.0)
    assert train["data_s"] == pytest.approx(1.25) and train["model_s"] == pytest.approx(0.25)
    assert train["compute_s"] == pytest.approx(6.0) and train["compute_total_s"] == pytest.approx(12.0)
    assert train["write_s"] == pytest.approx(0.25)              # a phase a job never entered is 0 s
    assert train["other_s"] == pytest.approx(0.05)
    assert train["outside_s"] == pytest.approx((0.9 + 1.5) / 2)  # benchmark s minus the phases, per job
    runs = rows.loc["runs_table"]
    assert runs["phase_jobs"] == 1 and runs["imports_s"] == 0.0
    assert runs["outside_s"] == pytest.approx(0.5 - 0.37) and runs["compute_total_s"] == pytest.approx(0.1)
    for rule in ("moments", "figures"):                         # no phase line; no log pattern
        assert rows.loc[rule, "phase_jobs"] == 0
        assert rows.loc[rule, [*PHASE_COLUMNS, "outside_s", "compute_total_s"]].isna().all()


def test_without_log_patterns_every_phase_is_nan(logs, benchmarks):
    table = runtime_table(benchmarks, PATTERNS)
    assert (table["phase_jobs"] == 0).all() and table[PHASE_COLUMNS].isna().all().all()
    assert table["total_s"].sum() == pytest.approx(36.0 + 2.0 + 0.5 + 4.0)


def test_job_log_fills_the_log_pattern_from_the_benchmark_path(tmp_path):
    bench = tmp_path / "results/benchmarks/lmc/digits/mlp/w16/f0/s0-s1o2.tsv"
    rx = pattern_regex("results/benchmarks/lmc/{dataset}/{arch}/w{width}/f{frozen}/s{seed_a}-s{seed_b}o{order}.tsv")
    log = job_log(bench, rx, "results/logs/lmc/{dataset}/{arch}/w{width,\\d+}/f{frozen}/s{seed_a}-s{seed_b}o{order}.log")
    assert log == tmp_path / "results/logs/lmc/digits/mlp/w16/f0/s0-s1o2.log"
    assert job_log(bench, rx, "/abs/{dataset}.log").as_posix() == "/abs/digits.log"
    rel = job_log(bench.relative_to(tmp_path), rx, "results/logs/{dataset}/{order}.log")
    assert rel.as_posix() == "results/logs/digits/2.log"      # relative to the working directory
    assert job_log(tmp_path / "other.tsv", rx, "x.log") is None
    twice = pattern_regex("b/{dataset}/{dataset}_{arch}.tsv")  # a repeated wildcard repeats its value
    assert twice.search("b/digits/digits_mlp.tsv") and not twice.search("b/digits/mnist1d_mlp.tsv")
    assert not pattern_regex("results/b/{x}.tsv").search("/tmp/xresults/b/1.tsv")   # whole components


def test_markdown_states_phases_and_useful_compute(logs, benchmarks):
    table = runtime_table(benchmarks, PATTERNS, LOG_PATTERNS)
    md = to_markdown(table)
    assert "## Where a job's time goes" in md
    assert "| train | 2 of 3 | 1.00 | 2.00 | 1.25 | 0.25 | 6.00 | 0.25 | 0.05 | 1.20 | 12.0 |" in md
    assert "| moments | 0 of 1 | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |" in md
    # the 3 jobs with phases: 10 + 14 + 0.5 s benchmarked, 12.1 s compute, 1 + 2 + 1 + 2 + 0.2 s start-up
    # and imports, 0.9 + 1.5 + 0.13 s outside
    assert ("**Useful compute**: 12.1 s of the 24.5 s benchmarked in the 3 jobs that logged their phases (49%); "
            "start-up and imports 6.2 s (25%), outside the process's clock 2.5 s (10%). "
            "No phases for: figures, moments.") in md
    html = to_html(table)
    assert "compute_total_s" in html and "<b>Useful compute</b>: 12.1 s" in html


def test_the_most_specific_pattern_wins(benchmarks):
    """train's s{seed}.tsv also matches train_order's s{seed}o{order}.tsv: the latter is its rule's."""
    bench(benchmarks / "train/digits/mlp/w16/f0/s0o1.tsv", (7.0, 700.0))
    patterns = {"train": "results/benchmarks/train/{dataset}/{arch}/w{width}/f{frozen}/s{seed}.tsv",
                "train_order": "results/benchmarks/train/{dataset}/{arch}/w{width}/f{frozen}/s{seed}o{order}.tsv"}
    rows = runtime_table(benchmarks, patterns).set_index("rule")
    assert rows.loc["train", "jobs"] == 3 and rows.loc["train_order", "jobs"] == 1
    assert rows.loc["train_order", "total_s"] == pytest.approx(7.0)


def test_pattern_regex():
    rx = pattern_regex("results/benchmarks/train/{dataset}/w{width,\\d+}/s{seed}.tsv")
    assert rx.search("/tmp/x/results/benchmarks/train/digits/w16/s0.tsv")
    assert not rx.search("results/benchmarks/train/digits/extra/w16/s0.tsv")   # one component per wildcard
    assert not rx.search("results/benchmarks/train/digits/w16/s0.tsv.bak")


def test_markdown_and_html(benchmarks):
    table = runtime_table(benchmarks)
    md = to_markdown(table)
    assert "| train | 3 | 36.0 |" in md and "| **total** | 6 |" in md and "n/a" in md
    assert "<table" in to_html(table)


def test_empty_and_bad_files(tmp_path):
    empty = runtime_table(tmp_path)
    assert list(empty.columns) == COLUMNS and empty.empty
    assert "| **total** | 0 |" in to_markdown(empty)
    assert "Useful compute**: unknown" in to_markdown(empty)
    bad = tmp_path / "x.tsv"
    bad.write_text("a\tb\n1\t2\n")
    with pytest.raises(ValueError, match="not a Snakemake benchmark"):
        read_benchmark(bad)


def test_progress_logs_first_last_and_throttles(caplog):
    log = logging.getLogger("convergent.test_progress")
    with caplog.at_level(logging.INFO, logger=log.name):
        tick = progress(100, "chunk", every_s=3600, log=log)
        for i in range(1, 101):
            tick(i)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("chunk: 1/100 (1 %)") and messages[1].startswith("chunk: 100/100 (100 %)")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=log.name):
        tick = progress(5, "batch", every_s=0.0, log=log)
        for i in range(1, 6):
            tick(i)
    assert len(caplog.records) == 5
