"""The small presets run for real: measured CPU seconds per job against bench_presets.py's extrapolation.

``bench/bench_presets.py`` extrapolates every preset's cost from per-image CPU seconds. Its
LMC and rotation jobs are models (images pushed through a network; retraining priced as full
training steps, an upper bound). This script checks those models where a run is affordable:
each small preset with LMC or rotation enabled (``brown-small``; ``li-small`` and
``kornblith-small`` have neither) is run in full:

* ``git archive REV`` into a fresh directory, ``snakemake --cores N --configfile
  configs/<preset>.yaml`` there (bench/bench_run.py's helpers);
* every job's wall seconds and CPU seconds (``s`` and ``cpu_time`` of its ``benchmark:`` file),
  per rule and per width (the ``w<k>`` component of the benchmark path); the data-order
  twins (``train_order``, ``extract_order``) count with the rule they repeat;
* with ``--estimate`` (the JSON ``bench_presets.py --out`` writes, measured the same session),
  compared in job wall seconds: one single-threaded job per core of an otherwise idle machine
  makes them its CPU seconds, while Snakemake samples ``cpu_time`` (every second, then every
  30 s) and can miss part of a job:
  per width, the measured mean CPU seconds per job against the extrapolated job, and their ratio;
  per rule, measured CPU-hours against extrapolated. The ratio measured / extrapolated of the
  small preset is then applied to the full preset of the same family (``brown``), whose jobs
  cannot be run here: that is its estimate from measured per-job costs.

A small job also pays a fixed start-up (interpreter, torch import: 2–4 s on this machine), which
the per-image model leaves out; at the full presets' job sizes (hours) it vanishes, so the
scaled estimate slightly overstates them. Writes bench/out/presets_measured.json
(``--measured FILE`` compares a run saved before with a new ``--estimate``, running nothing). Run:

    .venv/bin/python bench/bench_presets.py --out bench/out/presets.json
    .venv/bin/python bench/bench_presets_measured.py --estimate bench/out/presets.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_run import SNAKEMAKE, export, run_snakemake  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: small preset → the full preset whose LMC and rotation estimates its ratios calibrate
FAMILIES = {"brown-small": "brown"}
#: the rules whose jobs bench_presets.py models, and the rules folded into them
MODELLED = {"train": "train", "train_order": "train", "extract": "extract", "extract_order": "extract",
            "lmc": "lmc", "rotation": "rotation"}
ESTIMATE_KEY = {"train": "train_job_s", "extract": "extract_job_s", "lmc": "lmc_job_s", "rotation": "rotation_job_s"}


def job_seconds(root: Path) -> list[dict]:
    """One row per benchmark file under ``root/results/benchmarks``: rule, width (or None),
    wall ``s`` and ``cpu_s`` (Snakemake's format; the last line is the job's)."""
    rows = []
    bench = root / "results" / "benchmarks"
    for path in sorted(bench.rglob("*.tsv")):
        parts = path.relative_to(bench).parts
        width = next((int(p[1:]) for p in parts if re.fullmatch(r"w\d+", p)), None)
        with path.open() as f:
            last = list(csv.DictReader(f, delimiter="\t"))[-1]
        rows.append({"rule": parts[0], "width": width, "s": float(last["s"]), "cpu_s": float(last["cpu_time"])})
    return rows


def summarise(rows: list[dict]) -> dict:
    """Per rule: jobs, wall and CPU seconds; per modelled rule and width: jobs and mean CPU s."""
    rules: dict = defaultdict(lambda: {"jobs": 0, "s": 0.0, "cpu_s": 0.0})
    per_width: dict = defaultdict(lambda: {"jobs": 0, "s": 0.0, "cpu_s": 0.0})
    for r in rows:
        agg = rules[r["rule"]]
        agg["jobs"] += 1
        agg["s"] += r["s"]
        agg["cpu_s"] += r["cpu_s"]
        if r["rule"] in MODELLED and r["width"] is not None:
            cell = per_width[f"{MODELLED[r['rule']]}/w{r['width']}"]
            cell["jobs"] += 1
            cell["s"] += r["s"]
            cell["cpu_s"] += r["cpu_s"]
    for cell in per_width.values():
        cell["mean_cpu_s"] = round(cell["cpu_s"] / cell["jobs"], 2)
    return {"rules": {k: {**v, "s": round(v["s"], 2), "cpu_s": round(v["cpu_s"], 2)} for k, v in sorted(rules.items())},
            "per_width": dict(sorted(per_width.items()))}


def against_estimate(measured: dict, estimate: dict) -> dict:
    """Per rule and width, measured CPU seconds of all its jobs against the extrapolation
    (extrapolated job × the jobs it models: a train or extract job per run, data-order runs
    included; LMC per cross pair plus the naive curve of each data-order pair — the pipeline runs
    one LMC job per comparison group, so jobs differ, totals do not; one rotation job); and the measured and extrapolated CPU-hours per modelled rule
    (train, extract, lmc, rotation)."""
    count = {"train": "runs", "extract": "runs", "lmc": "cross_pairs", "rotation": None}
    widths, hours = [], {}
    for row in estimate["per_width"]:
        for rule, key in ESTIMATE_KEY.items():
            cell = measured["per_width"].get(f"{rule}/w{row['width']}")
            if cell is None or not row.get(key):
                continue
            extrapolated = (row[key] * row["cross_pairs"] + row.get("lmc_data_order_job_s", 0) * row.get("data_order_pairs", 0)
                            if rule == "lmc" else row[key] * (row[count[rule]] if count[rule] else 1))
            wall = cell.get("s")   # absent from files written before wall seconds were kept per width
            widths.append({"rule": rule, "width": row["width"], "jobs": cell["jobs"],
                           "measured_s": None if wall is None else round(wall, 1),
                           "measured_cpu_s": round(cell["cpu_s"], 1), "extrapolated_s": extrapolated,
                           "ratio": None if wall is None else round(wall / extrapolated, 3),
                           "cpu_ratio": round(cell["cpu_s"] / extrapolated, 3)})
    for rule in ESTIMATE_KEY:
        wall = sum(v["s"] for k, v in measured["rules"].items() if MODELLED.get(k) == rule)
        cpu = sum(v["cpu_s"] for k, v in measured["rules"].items() if MODELLED.get(k) == rule)
        est = estimate["cpu_hours"].get(rule, 0.0)
        hours[rule] = {"measured": round(wall / 3600, 3), "measured_cpu": round(cpu / 3600, 3), "extrapolated": est,
                       "ratio": round(wall / 3600 / est, 3) if est else None}
    return {"per_width": widths, "cpu_hours": hours}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=list(FAMILIES))
    ap.add_argument("--estimate", default=None, help="bench_presets.py --out JSON of the same session")
    ap.add_argument("--rev", default="HEAD")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the export directories")
    ap.add_argument("--measured", default=None,
                    help="a JSON this script wrote before: compare its runs with --estimate, run nothing")
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "presets_measured.json"))
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", args.rev],
                            capture_output=True, text=True, check=True).stdout.strip()
    estimate = json.loads(Path(args.estimate).read_text())["presets"] if args.estimate else None
    result: dict = {"rev": args.rev, "commit": commit, "cores": args.cores, "presets": {}}
    previous = json.loads(Path(args.measured).read_text())["presets"] if args.measured else {}
    for preset in args.presets:
        if preset in previous:
            entry = {k: previous[preset][k] for k in ("wall_s", "rules", "per_width")}
            result["measured_from"] = args.measured
            compare(preset, entry, estimate)
            result["presets"][preset] = entry
            continue
        root = Path(tempfile.mkdtemp(prefix=f"convergent-bench-{preset}-"))
        try:
            export(args.rev, root)
            env = {**os.environ, "PYTHONPATH": str(root)}
            log = out.parent / f"presets_measured_{preset}.snakemake.log"
            run = run_snakemake([SNAKEMAKE, "--cores", str(args.cores), "--configfile",
                                 str(root / "configs" / f"{preset}.yaml")], root, env, log)
            if run["rc"] != 0:
                raise RuntimeError(f"snakemake failed ({run['rc']}) on {preset} in {root}; see {log}")
            measured = summarise(job_seconds(root))
        finally:
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
        entry = {"wall_s": round(run["wall_s"], 1), **measured}
        compare(preset, entry, estimate)
        result["presets"][preset] = entry
        out.write_text(json.dumps(result, indent=2))
    out.write_text(json.dumps(result, indent=2))
    print(f"written {out}")


def compare(preset: str, entry: dict, estimate: dict | None) -> None:
    """Print ``entry``'s rules and, with an estimate of ``preset``, add its comparison to
    ``entry`` (``against_estimate``, and ``scaled_full_preset`` for a small preset's family) and
    print it."""
    print(f"{preset}: wall {entry['wall_s']:.0f} s; job hours per rule (wall) "
          + ", ".join(f"{k} {v['s'] / 3600:.3f}" for k, v in entry["rules"].items()), flush=True)
    if not estimate or preset not in estimate:
        return
    entry["against_estimate"] = cmp = against_estimate(entry, estimate[preset])
    for w in cmp["per_width"]:
        print(f"  {w['rule']} w{w['width']}: {w['jobs']} jobs, {w['measured_s']} s measured "
              f"({w['measured_cpu_s']:.1f} CPU s sampled) vs {w['extrapolated_s']} s extrapolated "
              f"({w['ratio']}×; sampled CPU {w['cpu_ratio']}×)")
    for rule, h in cmp["cpu_hours"].items():
        print(f"  {rule}: {h['measured']:.3f} core-hours measured vs {h['extrapolated']} extrapolated ({h['ratio']}×)"
              if h["ratio"] is not None else f"  {rule}: not extrapolated")
    full = FAMILIES.get(preset)
    if full and full in estimate:
        scaled = {rule: round(estimate[full]["cpu_hours"].get(rule, 0.0) * h["ratio"], 1)
                  if h["ratio"] is not None else estimate[full]["cpu_hours"].get(rule, 0.0)
                  for rule, h in cmp["cpu_hours"].items()}
        entry["scaled_full_preset"] = {"preset": full, "extrapolated": estimate[full]["cpu_hours"],
                                       "scaled_cpu_hours": scaled}
        print(f"  {full} scaled by these ratios (CPU-hours): {scaled} (extrapolated: {estimate[full]['cpu_hours']})")

if __name__ == "__main__":
    main()
