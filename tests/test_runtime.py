"""The runtime table from synthetic Snakemake benchmark files; the progress logger."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from convergent.logs import progress
from convergent.runtime import COLUMNS, pattern_regex, read_benchmark, runtime_table, to_html, to_markdown

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
