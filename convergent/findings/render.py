"""Rendering of the findings table: ``findings.md`` and ``findings.html`` (the same rows and words)."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

from convergent.findings.core import NOT_TESTABLE, Tables, _num
from convergent.findings.registry import FINDINGS, NOT_OPERATIONALISED, exclude_at_chance
from convergent.stats import MIN_SEEDS


INTRO = (
    "Every interval resamples what is independent in a sweep: the **seeds**, and the **test images** where "
    "measures.csv carries block-jackknife replicates (the Multi-Bootstrap of Sellam et al. 2022). Each draw "
    "takes the seeds with replacement and recomputes the statistic from the pairs among the drawn seeds (two "
    "copies of one seed form no pair), the networks among them, or the data-order pairs of the drawn order "
    "seeds; groups that are compared (ceiling − cross, frozen − unfrozen, trained − untrained) share the draw. "
    "The same draw reweights blocks of test images, shared by every network. The 95 % interval is the value ± "
    "Student's t with seeds − 1 degrees of freedom times the bootstrap standard error (corrected by "
    "√(s/(s−1))): chosen because it covers the truth in 94.5–99.6 % of simulated sweeps at 3, 5 and 10 seeds, "
    "where the plain percentile interval covers 68–91 % and resampling pairs 36–77 % (README, Intervals). "
    f"With fewer than {MIN_SEEDS} seeds there is no interval: the verdict is *inconclusive* and the reason "
    "names the seed count. *Seeds needed*: how many seeds the observed spread says a decisive verdict needs. "
    "Findings that "
    "compare levels (widths, depths, frozen_k) read calibrated values (chance 0 at every level); the reason "
    "says which. **supported**: the whole interval lies on the side of the threshold the paper predicts; "
    "**not supported**: it does not (*contradicted* when it lies wholly on the other side, *inconclusive* when "
    "it contains the threshold or there is no interval); **not testable**: this sweep lacks what the statistic "
    "needs, and the reason says what. Thresholds and rules are in `convergent/findings/`."
)


def _value_text(row: Mapping) -> str:
    if row["verdict"] == NOT_TESTABLE:
        return "—"
    if np.isfinite(row["ci_low"]) and np.isfinite(row["ci_high"]):
        text = f"{_num(row['value'])} [{_num(row['ci_low'])}, {_num(row['ci_high'])}]"
    else:
        text = f"{_num(row['value'])} [no interval]"
    return text + (f" ({row['reference']})" if row.get("reference") else "")


def _seeds_text(row: Mapping) -> str:
    """"seeds (needed)", e.g. "3 (5)"; "—" when not testable; "?" when the spread is unknown."""
    if row["verdict"] == NOT_TESTABLE:
        return "—"
    need = row.get("seeds_needed", np.nan)
    need = "?" if not np.isfinite(need) and np.isnan(need) else "> 1000" if not np.isfinite(need) else f"{need:.0f}"
    return f"{int(row.get('seeds', 0))} ({need})"


def _sweep_text(tables: Tables) -> str:
    runs = tables.runs
    if runs is None or runs.empty:
        return "No runs table (results/summary/runs.csv) was given."
    parts = [f"{len(runs)} trained networks"]
    for col in ("dataset", "arch", "width", "frozen_k", "seed"):
        if col in runs:
            parts.append(f"{col} ∈ {{{', '.join(map(str, sorted(runs[col].unique())))}}}")
    if "order_seed" in runs and (runs["order_seed"] != runs["seed"]).any():
        parts.append(f"{int((runs['order_seed'] != runs['seed']).sum())} of them data-order runs (the reference "
                     "seed's initial weights, another seed's minibatch order)")
    if "test_acc" in runs:
        parts.append(f"test accuracy {runs['test_acc'].min():.3f}–{runs['test_acc'].max():.3f}")
    excluded = exclude_at_chance(tables)[1]
    return "Sweep: " + "; ".join(parts) + "." + (f" Excluded: {excluded}" if excluded else "")


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(table: pd.DataFrame, tables: Tables | None = None) -> str:
    """``findings.md``: a summary table, then one paragraph per finding and cell."""
    lines = ["# Replication summary", "", _sweep_text(tables or Tables()), "", INTRO, "",
             "| Finding | Paper | Claim | Cell | Statistic | Value [95 % CI] | n | Seeds (needed) | Verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        cell = f"{r['dataset']}/{r['arch']}" if r["dataset"] else "—"
        lines.append("| " + " | ".join(_md_cell(x) for x in (
            r["finding"], r["paper"], r["claim"], cell, r["statistic"], _value_text(r),
            r["n"] if r["verdict"] != NOT_TESTABLE else "—", _seeds_text(r), f"**{r['verdict']}**")) + " |")
    lines += ["", "## Findings", ""]
    docs = {f.id: f for f in FINDINGS}
    for fid, group in table.groupby("finding", sort=False):
        first = group.iloc[0]
        lines += [f"### {fid}: {first['paper']} — {first['claim']}", ""]
        f = docs.get(fid)
        if f is not None:
            lines += [f"*Statistic*: {f.statistic} (interval over {f.unit}). *Rule*: {f.rule}.", ""]
        for _, r in group.iterrows():
            cell = f"{r['dataset']}/{r['arch']}" if r["dataset"] else "(no cell)"
            if r["verdict"] == NOT_TESTABLE:
                text = f"**{cell}: not testable** — {r['reason']}."
            else:
                text = (f"**{cell}: {r['verdict']}.** Value {_value_text(r)} over n = {r['n']} units, "
                        f"{int(r['seeds'])} seeds ({r['resampled']}); {r['reason']}. Seeds a decisive verdict "
                        f"needs at this spread: {_seeds_text(r).split(' (')[1].rstrip(')')}.")
                if r["detail"]:
                    text += f" Detail: {r['detail']}."
                if r.get("flip"):   # the same sentence whichever way it came out: what separates the two
                    text += f" *What would turn it*: not supported with {r['flip']}; supported otherwise."
            lines += [text, ""]
    lines += ["## Claims not operationalised here", ""]
    lines += [f"- {paper}: {claim} — {why}." for paper, claim, why in NOT_OPERATIONALISED]
    return "\n".join(lines) + "\n"


def to_html(table: pd.DataFrame, tables: Tables | None = None) -> str:
    """``findings.html``: the same content as :func:`to_markdown` for the Snakemake report
    (which shows HTML inline but offers markdown only as a download)."""
    esc = html.escape
    rows = []
    for _, r in table.iterrows():
        cell = f"{r['dataset']}/{r['arch']}" if r["dataset"] else "—"
        why = r["reason"] + (f". Detail: {r['detail']}" if r["detail"] else "")
        rows.append("<tr>" + "".join(f"<td>{esc(str(x))}</td>" for x in (
            r["finding"], r["paper"], r["claim"], cell, r["statistic"], _value_text(r),
            r["n"] if r["verdict"] != NOT_TESTABLE else "—", _seeds_text(r))) +
            f"<td class='{r['verdict'].replace(' ', '-')}'><b>{esc(r['verdict'])}</b></td><td>{esc(why)}</td></tr>")
    untested = "".join(f"<li>{esc(p)}: {esc(c)} — {esc(w)}.</li>" for p, c, w in NOT_OPERATIONALISED)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Replication summary</title><style>"
        "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;font-size:90%}"
        "td,th{border:1px solid #ccc;padding:4px;vertical-align:top}th{background:#eee}"
        ".supported{background:#d9f2d9}.not-supported{background:#f8d7d7}.not-testable{background:#eee}"
        "</style></head><body><h1>Replication summary</h1>"
        f"<p>{esc(_sweep_text(tables or Tables()))}</p><p>{esc(re.sub(r'[*`]', '', INTRO))}</p>"
        "<table><tr><th>Finding</th><th>Paper</th><th>Claim</th><th>Cell</th><th>Statistic</th>"
        "<th>Value [95 % CI]</th><th>n</th><th>Seeds (needed)</th><th>Verdict</th><th>Why</th></tr>" + "".join(rows) +
        f"</table><h2>Claims not operationalised here</h2><ul>{untested}</ul></body></html>\n")
