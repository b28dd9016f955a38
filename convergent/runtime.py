"""Where the time goes: Snakemake ``benchmark:`` files aggregated per rule.

Every rule writes one benchmark TSV per job (Snakemake's format: a header line
``s  h:m:s  max_rss  max_vms  max_uss  max_pss  io_in  io_out  mean_load  cpu_time``
and one line per repetition; ``s`` is wall-clock seconds, ``max_rss`` MB). The
runtime table has one row per rule: ``rule, jobs, total_s, mean_s, max_s, max_rss_mb``,
then where a job's time goes, from the ``job phases`` line each job's log ends with
(:mod:`convergent.logs`): ``phase_jobs`` (jobs whose log has the line), the mean seconds
per job of each phase (``startup_s`` … ``write_s``, ``other_s``), ``outside_s`` (the
benchmark's seconds minus the phases: Snakemake starting the job's process before the
clock starts, and the interpreter's exit after the line is logged) and ``compute_total_s``
(compute summed over the rule's jobs: the sweep's useful work). A rule none of whose
logs has the line gets NaN there, never an estimate.

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

from convergent.logs import PHASES, parse_phases

#: the phase columns: mean seconds per job of each phase of the job clock, ``other`` included
PHASE_COLUMNS = [f"{p}_s" for p in (*PHASES, "other")]
COLUMNS = ["rule", "jobs", "total_s", "mean_s", "max_s", "max_rss_mb", "phase_jobs", *PHASE_COLUMNS,
           "outside_s", "compute_total_s"]


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
    this workflow is laid out; the constraint part after a comma is ignored. Each wildcard
    is a named group (a repeated one must repeat its value); a relative pattern matches
    from the start of a path component.
    """
    out, pos, seen = [r"(?:^|(?<=/))"], 0, set()
    for m in re.finditer(r"\{[^{}]+\}", pattern):
        name = m.group()[1:-1].split(",")[0].strip()
        out.append(re.escape(pattern[pos:m.start()]))
        out.append(f"(?P={name})" if name in seen else f"(?P<{name}>[^/]+)")
        seen.add(name)
        pos = m.end()
    out.append(re.escape(pattern[pos:]))
    return re.compile("".join(out) + r"\Z")


def job_log(path: Path, regex: re.Pattern[str], log_pattern: str) -> Path | None:
    """The log of the job that wrote benchmark file ``path``: ``log_pattern`` (the rule's
    ``log:``) filled with the wildcards ``regex`` (its benchmark pattern) reads off ``path``.
    A relative log pattern is taken from the same directory as the benchmark pattern (the
    workflow's working directory). None if ``path`` does not match."""
    posix = path.as_posix()
    m = regex.search(posix)
    if m is None:
        return None
    wildcards = m.groupdict()
    log = re.sub(r"\{([^{},]+)(?:,[^{}]*)?\}", lambda w: wildcards[w.group(1).strip()], log_pattern)
    return Path(log) if Path(log).is_absolute() else Path(posix[:m.start()] or ".") / log


def read_phases(log: Path | None) -> dict[str, float] | None:
    """The phases a job's log ends with (seconds; a phase the job never entered is 0), or None
    when there is no log or it has no ``job phases`` line."""
    if log is None or not log.is_file():
        return None
    phases = parse_phases(log.read_text(errors="replace"))
    return None if phases is None else {p: float(phases.get(p, 0.0)) for p in (*PHASES, "other")}


def _literal(regex: str) -> str:
    """The literal text of a regex made by :func:`pattern_regex` (its wildcards removed)."""
    return regex.replace("[^/]+", "").replace("\\", "")


def rule_of(path: Path, bench_dir: Path, patterns: Mapping[str, re.Pattern[str]] | None = None) -> str:
    """The rule that wrote benchmark file ``path`` (see the module docstring).

    Where several patterns match, the most specific wins (the most literal characters): a
    wildcard matches any path component, so ``train``'s ``.../s{seed}.tsv`` also matches
    ``train_order``'s ``.../s{seed}o{order}.tsv`` files."""
    rel = path.relative_to(bench_dir)
    if patterns:
        posix = path.as_posix()
        matching = [rule for rule, regex in patterns.items() if regex.search(posix)]
        if matching:
            return max(matching, key=lambda rule: len(_literal(patterns[rule].pattern)))
    # by layout: a file directly inside a group directory is a single-job rule of that name
    return rel.stem if len(rel.parts) <= 2 else rel.parts[0]


def runtime_table(bench_dir: str | os.PathLike, patterns: Mapping[str, str] | None = None,
                  log_patterns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per rule with the jobs' wall time, peak memory and phases, slowest rule (total) first.

    ``patterns`` maps rule names to their ``benchmark:`` path patterns (as written in
    the rules, relative to the working directory, or absolute); optional. ``log_patterns``
    maps rule names to their ``log:`` patterns: each job's log is found from its benchmark
    file's wildcards and its ``job phases`` line read (a rule without a log pattern, or
    whose logs lack the line, gets NaN phases).
    """
    bench_dir = Path(bench_dir)
    compiled = {r: pattern_regex(Path(p).as_posix()) for r, p in (patterns or {}).items()}
    rows = []
    for path in sorted(bench_dir.rglob("*.tsv")):
        seconds, rss = read_benchmark(path)
        rule = rule_of(path, bench_dir, compiled)
        log = (job_log(path, compiled[rule], str(log_patterns[rule]))
               if rule in compiled and rule in (log_patterns or {}) else None)
        phases = read_phases(log)
        rows.append({"rule": rule, "s": seconds, "rss": rss, "has_phases": phases is not None,
                     **{f"{p}_s": (phases or {}).get(p, np.nan) for p in (*PHASES, "other")}})
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    frame = pd.DataFrame(rows)
    frame["outside_s"] = frame["s"] - frame[PHASE_COLUMNS].sum(axis=1, min_count=1)
    table = frame.groupby("rule").agg(jobs=("s", "size"), total_s=("s", "sum"), mean_s=("s", "mean"),
                                      max_s=("s", "max"), max_rss_mb=("rss", "max"),
                                      phase_jobs=("has_phases", "sum"),
                                      **{c: (c, "mean") for c in (*PHASE_COLUMNS, "outside_s")},
                                      compute_total_s=("compute_s", lambda x: x.sum(min_count=1)),
                                      ).reset_index()
    table["phase_jobs"] = table["phase_jobs"].astype(int)
    return table.sort_values(["total_s", "rule"], ascending=[False, True], ignore_index=True)[COLUMNS]


def to_markdown(table: pd.DataFrame) -> str:
    """The runtime table as markdown, with a total line and each rule's share of the time; then
    each rule's phases per job and a line stating the sweep's useful compute."""
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
    lines += ["", "## Where a job's time goes", "",
              "Mean seconds per job of each phase, from the `job phases (s)` line each job's log ends with "
              "(`results/logs/`): `startup` (interpreter, Snakemake's script preamble, the script's imports), "
              "`imports` (libraries loaded where needed), `data`, `model` (networks, checkpoints, stores), "
              "`compute` (the work itself), `write`, `other` (after the last lap); `outside`: the benchmark's "
              "seconds minus the phases (Snakemake starting the process, the interpreter's exit). "
              "`n/a`: no log of the rule has the line (it ran before the phase clock existed, or its "
              "script does not log phases); nothing is estimated for it.", "",
              "| rule | jobs with phases | startup | imports | data | model | compute | write | other | outside "
              "| compute_total_s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for _, r in table.iterrows():
        cells = [_s(r[c]) for c in (*PHASE_COLUMNS, "outside_s")]
        lines.append(f"| {r['rule']} | {int(r['phase_jobs'])} of {int(r['jobs'])} | {' | '.join(cells)} | "
                     f"{_s(r['compute_total_s'], 1)} |")
    lines += ["", _compute_line(table)]
    return "\n".join(lines) + "\n"


def _compute_line(table: pd.DataFrame) -> str:
    """The total line of the phases: how much of the jobs' time was their useful compute."""
    timed = table[table["phase_jobs"] > 0] if len(table) else table
    if timed.empty:
        return "**Useful compute**: unknown (no job log has a `job phases` line)."
    n = timed["phase_jobs"].astype(float)
    per_phase = {c: float((timed[c].fillna(0.0) * n).sum()) for c in (*PHASE_COLUMNS, "outside_s")}
    wall = sum(per_phase.values())
    compute = float(timed["compute_total_s"].sum())
    start = per_phase["startup_s"] + per_phase["imports_s"]
    missing = sorted(set(table["rule"]) - set(timed["rule"]))
    pct = lambda x: f"{x / wall:.0%}" if wall > 0 else "n/a"  # noqa: E731
    line = (f"**Useful compute**: {compute:.1f} s of the {wall:.1f} s benchmarked in the {int(n.sum())} jobs "
            f"that logged their phases ({pct(compute)}); start-up and imports {start:.1f} s ({pct(start)}), "
            f"outside the process's clock {per_phase['outside_s']:.1f} s ({pct(per_phase['outside_s'])}).")
    if missing:
        line += f" No phases for: {', '.join(missing)}."
    return line


def _s(x: float, digits: int = 2) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.{digits}f}"


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
            "any job. Then the mean seconds per job of each phase (startup … write, other; from the "
            "<code>job phases</code> line of each job's log; phase_jobs: the jobs whose log has it), "
            "outside_s (the benchmark's seconds minus the phases: Snakemake starting the process, the "
            "interpreter's exit) and compute_total_s (the rule's useful compute); n/a where no log has "
            f"the line.</p>{body}<p>{_html_escape(_compute_line(table))}</p></body></html>\n")


def _html_escape(markdown_line: str) -> str:
    import html

    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", re.sub(r"`(.+?)`", r"<code>\1</code>", html.escape(markdown_line)))
