"""Where the time goes: Snakemake ``benchmark:`` files aggregated per rule.

Every rule writes one benchmark TSV per job (Snakemake's format: a header line
``s  h:m:s  max_rss  max_vms  max_uss  max_pss  io_in  io_out  mean_load  cpu_time``
and one line per repetition; ``s`` is wall-clock seconds, ``max_rss`` MB). The
runtime table has one row per rule: ``rule, jobs, total_s, mean_s, max_s, max_rss_mb``.

A file is attributed to a rule by the rule's own benchmark pattern when the
workflow passes them (``{rule: "results/benchmarks/train/{dataset}/.../s{seed}.tsv"}``);
otherwise by this project's layout: ``<bench_dir>/<rule>/<wildcards...>.tsv`` for
per-job rules and ``<bench_dir>/<group>/<rule>.tsv`` for single-job rules (e.g.
``aggregate/runs_table.tsv``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ["rule", "jobs", "total_s", "mean_s", "max_s", "max_rss_mb"]


def read_benchmark(path: str | os.PathLike) -> tuple[float, float]:
    """``(seconds, max_rss_mb)`` of one benchmark file: the mean over its repetitions.

    Snakemake writes ``NA`` (or ``-``) where a value could not be measured; such a
    value becomes NaN. A file without a numeric ``s`` column raises ``ValueError``.
    """
    frame = pd.read_csv(path, sep="\t", na_values=["NA", "-", ""])
    if "s" not in frame.columns:
        raise ValueError(f"{path} is not a Snakemake benchmark file (no 's' column): {list(frame.columns)}")
    seconds = pd.to_numeric(frame["s"], errors="coerce")
    rss = pd.to_numeric(frame.get("max_rss", pd.Series(dtype=float)), errors="coerce")
    return float(seconds.mean()), float(rss.max()) if rss.notna().any() else float("nan")


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A Snakemake path pattern with ``{wildcards}`` (optionally ``{name,regex}``) as a regex.

    Wildcards match within one path component, which is how every benchmark path of
    this workflow is laid out; the constraint part after a comma is ignored.
    """
    out, pos = [], 0
    for m in re.finditer(r"\{[^{}]+\}", pattern):
        out.append(re.escape(pattern[pos:m.start()]))
        out.append(r"[^/]+")
        pos = m.end()
    out.append(re.escape(pattern[pos:]))
    return re.compile("".join(out) + r"\Z")


def rule_of(path: Path, bench_dir: Path, patterns: Mapping[str, re.Pattern[str]] | None = None) -> str:
    """The rule that wrote benchmark file ``path`` (see the module docstring)."""
    rel = path.relative_to(bench_dir)
    if patterns:
        posix = path.as_posix()
        for rule, regex in patterns.items():
            if regex.search(posix):
                return rule
    # by layout: a file directly inside a group directory is a single-job rule of that name
    return rel.stem if len(rel.parts) <= 2 else rel.parts[0]


def runtime_table(bench_dir: str | os.PathLike, patterns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per rule with the jobs' wall time and peak memory, slowest rule (total) first.

    ``patterns`` maps rule names to their ``benchmark:`` path patterns (as written in
    the rules, relative to the working directory, or absolute); optional.
    """
    bench_dir = Path(bench_dir)
    compiled = {r: pattern_regex(Path(p).as_posix()) for r, p in (patterns or {}).items()}
    rows = []
    for path in sorted(bench_dir.rglob("*.tsv")):
        seconds, rss = read_benchmark(path)
        rows.append({"rule": rule_of(path, bench_dir, compiled), "s": seconds, "rss": rss})
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    frame = pd.DataFrame(rows)
    table = frame.groupby("rule").agg(jobs=("s", "size"), total_s=("s", "sum"), mean_s=("s", "mean"),
                                      max_s=("s", "max"), max_rss_mb=("rss", "max")).reset_index()
    return table.sort_values(["total_s", "rule"], ascending=[False, True], ignore_index=True)[COLUMNS]


def to_markdown(table: pd.DataFrame) -> str:
    """The runtime table as markdown, with a total line and each rule's share of the time."""
    total = float(table["total_s"].sum()) if len(table) else 0.0
    lines = ["# Runtime per rule", "",
             "Wall-clock seconds from each job's `benchmark:` file (`results/benchmarks/`); the jobs of a "
             "rule may have run in parallel, so `total_s` is CPU-slot time, not elapsed time. "
             "`max_rss_mb`: the largest peak resident memory of any job of the rule.", "",
             "| rule | jobs | total_s | share | mean_s | max_s | max_rss_mb |", "|---|---:|---:|---:|---:|---:|---:|"]
    for _, r in table.iterrows():
        share = r["total_s"] / total if total > 0 else np.nan
        lines.append(f"| {r['rule']} | {int(r['jobs'])} | {r['total_s']:.1f} | {share:.0%} | {r['mean_s']:.2f} | "
                     f"{r['max_s']:.2f} | {_mb(r['max_rss_mb'])} |")
    lines.append(f"| **total** | {int(table['jobs'].sum()) if len(table) else 0} | {total:.1f} | | | | |")
    return "\n".join(lines) + "\n"


def _mb(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.0f}"


def to_html(table: pd.DataFrame) -> str:
    """The runtime table as a small standalone HTML page (the report shows HTML inline)."""
    body = table.to_html(index=False, float_format=lambda x: f"{x:.2f}", na_rep="n/a", border=0)
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>Runtime per rule</title><style>"
            "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px;text-align:right}</style></head><body>"
            "<h1>Runtime per rule</h1><p>Wall-clock seconds summed over each rule's jobs (from the "
            "<code>benchmark:</code> files), slowest rule first; max_rss_mb is the largest peak memory of "
            f"any job.</p>{body}</body></html>\n")
