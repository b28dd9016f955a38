"""Weight-space cost against training on the paper-shaped sweep, and LMC against its full computation.

Issue 22's measure: on bench/paper_shaped.yaml (shapes32 1,000 + 1,000 images; cnn, resnet18,
WRN-10-4 at width 4; seeds 0/1; frozen_k 0/1; 1 epoch; LMC 5 α × {naive, bn_reset,
permuted_weight}; rotation strengths {0, 1}; data-order control on), run ``--repeats`` times:

* ``git archive REV`` into a fresh directory, ``snakemake --cores N --configfile ...`` there
  (as bench/bench_run.py does, niced by ``--nice``), then from the run's own
  ``results/summary/runtime.csv``: ``ratio = (lmc + rotation) / (train + train_order)`` job
  seconds (each job's wall time as its ``benchmark:`` file measured it);
* after the last repeat, in the same directory: the ``lmc`` jobs again with the full
  computation (every training image, BatchNorm reset on the whole training split, every α;
  the ``lmc`` keys of :data:`FULL_LMC`), the jobs' seconds, and every barrier of the
  pipeline's defaults against the full one: ``diff = default − full`` for the loss and error
  barriers of every (pair, variant, split), ``diff / se`` (``se``: the default run's
  ``*_barrier_se``) and whether ``|diff| ≤ max(se, 0.01)`` (the issue's criterion).

The baseline (the code before this change) is not rerun here: issue 22 measured it on this
machine (1,345 s wall, ratio 5.2). Writes bench/out/weights_cost.json. Run:

    .venv/bin/python bench/bench_weights_cost.py [--repeats 2] [--config bench/paper_shaped.yaml]
        [--rev HEAD] [--cores 2] [--nice 10] [--no-full]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_run import SNAKEMAKE, export, run_snakemake  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: the ``lmc`` keys that make the pipeline evaluate θ(α) in full (convergent.weights.lmc.EvalOptions)
FULL_LMC = {"train_samples": None, "test_samples": None, "calib_samples": None, "coarse_alphas": None}
WEIGHTS, TRAINING = ("lmc", "rotation"), ("train", "train_order")
KEYS = ["dataset", "arch", "width", "frozen_k", "control", "seed_a", "seed_b", "variant", "split"]


def rule_seconds(root: Path) -> dict[str, dict[str, float]]:
    """``{rule: {"jobs", "s"}}`` from the run's results/summary/runtime.csv."""
    with (root / "results" / "summary" / "runtime.csv").open() as f:
        return {r["rule"]: {"jobs": int(r["jobs"]), "s": float(r["total_s"])} for r in csv.DictReader(f)}


def bench_seconds(root: Path, rule: str, column: str = "s") -> float:
    """Sum of ``column`` (``s``: wall; ``cpu_time``: CPU seconds of the job's process tree)
    over every benchmark file of ``rule`` (Snakemake's format)."""
    total = 0.0
    for path in (root / "results" / "benchmarks" / rule).rglob("*.tsv"):
        with path.open() as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        total += float(rows[-1][column])
    return total


def read_barriers(root: Path) -> list[dict[str, str]]:
    rows = []
    for path in sorted((root / "results" / "lmc").rglob("barriers.csv")):
        with path.open() as f:
            rows += list(csv.DictReader(f))
    return rows


def agreement(default: list[dict], full: list[dict]) -> dict:
    """Every barrier of ``default`` against the same (pair, variant, split) of ``full``."""
    index = {tuple(r.get(k, "") for k in KEYS): r for r in full}
    rows, worst = [], {}
    for r in default:
        f = index.get(tuple(r.get(k, "") for k in KEYS))
        if f is None or r["applicable"] != "True":
            continue
        for q in ("loss", "error"):
            d, b = float(r[f"{q}_barrier"]), float(f[f"{q}_barrier"])
            se = float(r[f"{q}_barrier_se"]) if r.get(f"{q}_barrier_se") not in (None, "") else math.nan
            diff = d - b
            tol = max(se if math.isfinite(se) else 0.0, 0.01)
            rows.append({**{k: r.get(k) for k in KEYS}, "quantity": q, "default": d, "full": b, "diff": diff,
                         "se": se, "diff_over_se": diff / se if se > 0 else (0.0 if diff == 0 else math.inf),
                         "n_images": r.get("n_images"), "n_alphas": r.get("n_alphas"),
                         "agrees": abs(diff) <= tol + 1e-12})
    for q in ("loss", "error"):
        sub = [x for x in rows if x["quantity"] == q]
        if sub:
            worst[q] = {"max_abs_diff": max(abs(x["diff"]) for x in sub),
                        "max_abs_diff_over_se": max(abs(x["diff_over_se"]) for x in sub),
                        "agree": sum(x["agrees"] for x in sub), "of": len(sub)}
    return {"rows": rows, "summary": worst, "all_agree": all(x["agrees"] for x in rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--config", default=str(REPO / "bench" / "paper_shaped.yaml"))
    ap.add_argument("--rev", default="HEAD")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--nice", type=int, default=0,
                    help="added niceness of snakemake and its jobs (or run the whole script under nice)")
    ap.add_argument("--no-full", action="store_true", help="skip the full-computation LMC rerun")
    ap.add_argument("--keep", action="store_true", help="keep the export directories")
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "weights_cost.json"))
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", args.rev],
                            capture_output=True, text=True, check=True).stdout.strip()
    config = Path(args.config).resolve()
    nice = ["nice", "-n", str(args.nice)] if args.nice else []
    result: dict = {"rev": args.rev, "commit": commit, "config": str(config), "cores": args.cores, "repeats": []}

    def save() -> None:
        out.write_text(json.dumps(result, indent=2))

    root = None
    for i in range(args.repeats):
        if root is not None and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        root = Path(tempfile.mkdtemp(prefix=f"convergent-bench-weights{i}-"))
        export(args.rev, root)
        env = {**os.environ, "PYTHONPATH": str(root)}
        log = out.parent / f"weights_cost{i}.snakemake.log"
        run = run_snakemake([*nice, SNAKEMAKE, "--cores", str(args.cores), "--configfile", str(config)], root, env, log)
        if run["rc"] != 0:
            raise RuntimeError(f"snakemake failed ({run['rc']}) in {root}; see {log}")
        rules = rule_seconds(root)
        weights = sum(rules.get(r, {"s": 0.0})["s"] for r in WEIGHTS)
        training = sum(rules.get(r, {"s": 0.0})["s"] for r in TRAINING)
        # on a shared machine a job's wall time also measures its neighbours: the same ratio
        # in CPU seconds (the benchmark files' cpu_time) is given beside it
        cpu = {r: bench_seconds(root, r, "cpu_time") for r in (*WEIGHTS, *TRAINING)}
        cpu_ratio = sum(cpu[r] for r in WEIGHTS) / sum(cpu[r] for r in TRAINING)
        rep = {"wall_s": run["wall_s"], "rules": rules, "weights_s": round(weights, 2),
               "training_s": round(training, 2), "ratio": round(weights / training, 3),
               "cpu_s": {r: round(v, 2) for r, v in cpu.items()}, "cpu_ratio": round(cpu_ratio, 3),
               "load_avg_end": os.getloadavg()}
        result["repeats"].append(rep)
        save()
        print(f"repeat {i}: wall {run['wall_s']:.0f} s; lmc {rules.get('lmc', {}).get('s')} s, rotation "
              f"{rules.get('rotation', {}).get('s')} s, train + train_order {training:.1f} s; "
              f"(lmc + rotation) / (train + train_order) = {rep['ratio']:.2f} in job wall seconds, "
              f"{rep['cpu_ratio']:.2f} in CPU seconds ({rep['cpu_s']})", flush=True)

    if not args.no_full and root is not None:
        default_bars = read_barriers(root)
        default_lmc_s = bench_seconds(root, "lmc")
        default_lmc_cpu = bench_seconds(root, "lmc", "cpu_time")
        cfg = yaml.safe_load(config.read_text())
        cfg["lmc"] = {**cfg.get("lmc", {}), **FULL_LMC}
        full_cfg = root / "full_lmc.yaml"
        full_cfg.write_text(yaml.safe_dump(cfg, sort_keys=False))   # key order is part of the params Snakemake compares
        targets = [str(p.relative_to(root)) for p in sorted((root / "results" / "lmc").rglob("barriers.csv"))]
        env = {**os.environ, "PYTHONPATH": str(root)}
        log = out.parent / "weights_cost_full_lmc.snakemake.log"
        t0 = time.perf_counter()
        run = run_snakemake([*nice, SNAKEMAKE, "--cores", str(args.cores), "--configfile", str(full_cfg),
                             "--forcerun", "lmc", *targets], root, env, log)
        if run["rc"] != 0:
            raise RuntimeError(f"full-LMC snakemake failed ({run['rc']}) in {root}; see {log}")
        full_lmc_s = bench_seconds(root, "lmc")
        full_lmc_cpu = bench_seconds(root, "lmc", "cpu_time")
        agree = agreement(default_bars, read_barriers(root))
        result["full_lmc"] = {"lmc_keys": FULL_LMC, "wall_s": round(time.perf_counter() - t0, 2),
                              "lmc_job_s_full": round(full_lmc_s, 2), "lmc_job_s_default": round(default_lmc_s, 2),
                              "time_saved": round(1 - default_lmc_s / full_lmc_s, 3) if full_lmc_s else None,
                              "lmc_cpu_s_full": round(full_lmc_cpu, 2), "lmc_cpu_s_default": round(default_lmc_cpu, 2),
                              "cpu_saved": round(1 - default_lmc_cpu / full_lmc_cpu, 3) if full_lmc_cpu else None,
                              **agree}
        save()
        print(f"LMC jobs: {default_lmc_s:.1f} s with the defaults, {full_lmc_s:.1f} s in full "
              f"({result['full_lmc']['time_saved']:.0%} saved); CPU {default_lmc_cpu:.1f} s vs {full_lmc_cpu:.1f} s "
              f"({result['full_lmc']['cpu_saved']:.0%} saved)")
        for q, s in agree["summary"].items():
            print(f"  {q} barriers: {s['agree']}/{s['of']} within max(SE, 0.01); max |diff| {s['max_abs_diff']:.4f}, "
                  f"max |diff|/SE {s['max_abs_diff_over_se']:.2f}")
    if root is not None and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    elif root is not None:
        result["export"] = str(root)
        save()
    print(f"written {out}")


if __name__ == "__main__":
    main()
