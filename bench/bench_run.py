"""Run time: the default sweep on a clean export, beside the jobs' useful compute (the floor).

For each of ``--repeats`` runs: ``git archive REV`` into a fresh directory (the repository as
a user gets it: no results/, no .snakemake/, no data cache), then ``snakemake --cores 2`` there
with the ready venv's snakemake and ``PYTHONPATH=<export>`` (so the export's own ``convergent``
is imported, not the editable install), on the export's config.yaml or ``--config FILE``.
Per repeat:

* ``wall_s``: seconds of the snakemake command (the export is timed apart, ``export_s``);
* ``jobs``: the ``total`` of Snakemake's job-stats table;
* ``job_s``, ``per_rule``, ``phases``, ``floor_s``: read from the run's own
  ``results/summary/runtime.csv`` (rule ``runtime_table``, :mod:`convergent.runtime`): each
  job's wall time as its ``benchmark:`` measured it, attributed to the rule that wrote it, and
  the ``job phases (s): {...}`` line each job logs when it exits (startup, imports, data,
  model, compute, write, other), summed;
* ``floor_s``: the sum of ``compute``, the work itself, which no pipeline change short of a
  faster algorithm removes. Jobs whose log has no phases line (``no_phases``) count wholly as
  overhead: their time is in ``job_s`` but never in the floor; ``no_compute`` names the rules
  whose jobs log phases but never lap ``compute`` (a script not instrumented yet). A revision
  whose runtime table has no phase columns gets no floor;
* ``snakemake_cpu_s``: CPU seconds of the snakemake process itself (polled with psutil,
  children excluded: DAG, scheduling, file checks); ``total_cpu_s``: it and every job.

The summary gives min / median / max wall, ``wall / floor`` (median wall over median floor)
and ``ideal_wall_s`` = floor / cores, the wall time of a zero-overhead pipeline that keeps
every core busy. Writes bench/out/run.json (and each run's snakemake output beside it).

    .venv/bin/python bench/bench_run.py [--repeats 3] [--rev HEAD] [--cores 2] [--config FILE] [--keep]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def export(rev: str, dest: Path) -> None:
    """The tree of ``rev`` as ``git archive`` writes it, unpacked into ``dest``."""
    subprocess.run(["bash", "-o", "pipefail", "-c",
                    f"git -C {shlex.quote(str(REPO))} archive {shlex.quote(rev)} | tar -x -C {shlex.quote(str(dest))}"],
                   check=True)


def run_snakemake(cmd: list[str], cwd: Path, env: dict, log: Path) -> dict:
    """Run ``cmd``; wall time, exit code, CPU of the process itself (psutil, last poll) and of
    it with all its children (wait4)."""
    done = threading.Event()
    end: dict = {}
    with log.open("w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)

        def waiter() -> None:
            _, status, usage = os.wait4(proc.pid, 0)
            end.update(t=time.perf_counter(), rc=os.waitstatus_to_exitcode(status), usage=usage)
            done.set()

        threading.Thread(target=waiter, daemon=True).start()
        ps, own = psutil.Process(proc.pid), None
        while not done.wait(0.2):
            try:
                t = ps.cpu_times()
                own = t.user + t.system
            except psutil.Error:
                pass
        proc.returncode = end["rc"]   # reaped by wait4; keep Popen from waiting again
    usage = end["usage"]
    return {"wall_s": round(end["t"] - start, 2), "rc": end["rc"],
            "snakemake_cpu_s": round(own, 2) if own is not None else None,
            "total_cpu_s": round(usage.ru_utime + usage.ru_stime, 2)}


def collect(root: Path, output: str) -> dict:
    """Job count, job time and phases of a finished run in ``root`` (see module docstring)."""
    with (root / "results" / "summary" / "runtime.csv").open() as f:
        table = list(csv.DictReader(f))

    def number(row: dict, key: str) -> float:
        value = row.get(key) or "nan"
        return 0.0 if math.isnan(float(value)) else float(value)

    phase_keys = [k[:-2] for k in (table[0] if table else {}) if k.endswith("_s")
                  and k not in ("total_s", "mean_s", "max_s", "outside_s", "compute_total_s")]
    has_phases = "compute_total_s" in (table[0] if table else {})
    phases = {p: sum(number(r, f"{p}_s") * number(r, "phase_jobs") for r in table) for p in phase_keys}
    missing = {r["rule"]: int(r["jobs"]) - int(number(r, "phase_jobs")) for r in table}
    total = re.search(r"^total\s+(\d+)\s*$", output, re.M)
    steps = re.findall(r"(\d+) of (\d+) steps \(\d+%\) done", output)
    return {
        "jobs": int(total.group(1)) if total else None,
        "jobs_done": int(steps[-1][0]) if steps else 0,
        "benchmarks": sum(int(r["jobs"]) for r in table),
        "job_s": round(sum(number(r, "total_s") for r in table), 2),
        "floor_s": round(phases.get("compute", 0.0), 2) if has_phases else None,
        "phases": {k: round(v, 2) for k, v in phases.items()},
        "no_phases": {"jobs": sum(missing.values()), "rules": {k: v for k, v in missing.items() if v},
                      "note": "counted wholly as overhead (in job_s, not in floor_s)"},
        "no_compute": {"rules": [r["rule"] for r in table
                                 if number(r, "phase_jobs") and not number(r, "compute_total_s")]},
        "per_rule": {r["rule"]: {"jobs": int(r["jobs"]), "s": round(number(r, "total_s"), 2),
                                 "compute": round(number(r, "compute_total_s"), 2)} for r in table},
    }


def repeat(i: int, args: argparse.Namespace, out_dir: Path) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"convergent-bench-run{i}-"))
    try:
        t0 = time.perf_counter()
        export(args.rev, root)
        export_s = time.perf_counter() - t0
        env = {**os.environ, "PYTHONPATH": str(root)}
        where = subprocess.run([sys.executable, "-c", "import convergent; print(convergent.__file__)"],
                               cwd=root, env=env, capture_output=True, text=True).stdout.strip()
        cmd = [SNAKEMAKE, "--cores", str(args.cores)]
        if args.config:
            cmd += ["--configfile", str(Path(args.config).resolve())]
        log = out_dir / f"run{i}.snakemake.log"
        run = run_snakemake(cmd, root, env, log)
        output = log.read_text(errors="replace")
        if run["rc"] != 0:
            raise RuntimeError(f"snakemake failed ({run['rc']}) in {root}; see {log}:\n{output[-3000:]}")
        result = {**run, "export_s": round(export_s, 2), "convergent_imported_from": where, **collect(root, output)}
        result["wall_over_floor"] = round(result["wall_s"] / result["floor_s"], 2) if result["floor_s"] else None
        if args.keep:
            result["export"] = str(root)
        return result
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rev", default="HEAD", help="git revision to export (default HEAD)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--config", default=None, help="--configfile for snakemake (default: the export's config.yaml)")
    ap.add_argument("--keep", action="store_true", help="keep the export directories")
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "run.json"))
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", args.rev],
                            capture_output=True, text=True, check=True).stdout.strip()

    runs = []
    for i in range(args.repeats):
        runs.append(repeat(i, args, out.parent))
        r = runs[-1]
        print(f"repeat {i}: wall {r['wall_s']:.1f} s, {r['jobs']} jobs, job time {r['job_s']:.1f} s, "
              f"floor {r['floor_s']} s (wall/floor {r['wall_over_floor']}), "
              f"snakemake cpu {r['snakemake_cpu_s']} s, jobs without phases {r['no_phases']['jobs']}, "
              f"rules without a compute phase {r['no_compute']['rules']}", flush=True)

    walls = [r["wall_s"] for r in runs]
    floors = [r["floor_s"] for r in runs]
    floor = statistics.median(floors) if None not in floors else None
    summary = {
        "wall_s": {"min": min(walls), "median": statistics.median(walls), "max": max(walls)},
        "floor_s": floor,
        "wall_over_floor": round(statistics.median(walls) / floor, 2) if floor else None,
        "ideal_wall_s": round(floor / args.cores, 2) if floor else None,
        "wall_over_ideal": round(statistics.median(walls) / (floor / args.cores), 2) if floor else None,
        "job_s_per_core": round(statistics.median(r["job_s"] for r in runs) / args.cores, 2),
    }
    result = {"rev": args.rev, "commit": commit, "cores": args.cores, "config": args.config,
              "snakemake": SNAKEMAKE, "summary": summary, "repeats": runs}
    out.write_text(json.dumps(result, indent=2))
    w = summary["wall_s"]
    print(f"wall {w['min']:.1f} / {w['median']:.1f} / {w['max']:.1f} s (min / median / max of {len(runs)}); "
          f"floor {floor} s (sum of compute); wall/floor {summary['wall_over_floor']}; "
          f"ideal wall floor/{args.cores} cores = {summary['ideal_wall_s']} s "
          f"(wall/ideal {summary['wall_over_ideal']}); job time/{args.cores} cores {summary['job_s_per_core']:.1f} s")
    print(f"written {out}")


if __name__ == "__main__":
    main()
