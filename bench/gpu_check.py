"""The GPU path, run: one sweep with ``device: cuda`` against the same sweep on the CPU.

``device: cuda`` is validated by the schema and threaded through every job (tests/weights/
test_device.py checks that on the CPU), but a real accelerator decides whether it works. This
script, given one, answers four questions on bench/paper_shaped.yaml (or ``--config``):

1. **Does every stage complete?** Both sweeps run from a clean ``git archive`` export
   (as bench/bench_run.py does); each must exit 0 and write a runtime row for every rule the
   CPU sweep has.
2. **Where does the time go?** Per rule, the job seconds of each sweep (its
   ``results/summary/runtime.csv``) and their ratio.
3. **Do the checkpoints train on the device?** Every run's ``metrics.json`` says it trained on
   the device (``device`` starts with ``--device``), with finite losses.
4. **Do the results agree?** Summary tables are matched row by row on their key columns and
   compared with tolerances (:data:`TOLERANCES`), justified as follows. GPU kernels are not
   bit-identical to the CPU's (other summation orders; cuDNN convolutions may use TF32), so
   a forward pass differs by ~1e-3 relative at most; networks that are not trained (the
   *floor* control: untrained nets of the same seeds, initialised on the CPU in both sweeps)
   therefore agree to ``floor_atol`` on every measure. Training amplifies rounding: one epoch
   of SGD from the same initial weights and batch order ends at nearby but different weights,
   so quantities of trained networks are compared with looser, stated tolerances: accuracies
   and losses to ``acc_atol``/``loss_rtol``, bounded similarity measures to ``measure_atol``,
   LMC barriers within ``max(barrier_se_factor × SE, barrier_atol)`` (SE: the barrier's
   standard error over images, reported by the pipeline).

``--device cpu`` is the dry check on a machine without an accelerator: both sweeps run on
the CPU, the script's plumbing and every check run, and the results must agree to rounding
(the same tolerances then hold with a wide margin). ``--cpu-results DIR`` reuses a finished
CPU sweep of the same config (an export kept by ``bench_weights_cost.py --keep``) instead of
running it again. Writes bench/out/gpu_check.json and exits 1 if any check fails.

    .venv/bin/python bench/gpu_check.py [--device cuda] [--config bench/paper_shaped.yaml]
        [--cpu-results DIR] [--cores 2] [--keep]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_run import SNAKEMAKE, export, run_snakemake  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TOLERANCES = {"floor_atol": 1e-2, "acc_atol": 0.05, "loss_rtol": 0.1, "measure_atol": 0.1,
              "barrier_se_factor": 3.0, "barrier_atol": 0.03}
#: columns that identify a row of a summary table (those present are used)
KEYS = ["dataset", "arch", "width", "frozen_k", "control", "seed", "order_seed", "seed_a", "seed_b",
        "order_seed_a", "order_seed_b", "layer", "layer_a", "layer_b", "measure", "view", "parameter",
        "parameter_value", "variant", "split", "strength", "linear"]


def sweep(root: Path, config: dict, device: str, cores: int, log: Path) -> dict:
    """Run ``config`` with ``device`` in the export ``root``; its wall time and exit code."""
    cfg = {**config, "device": device}
    path = root / f"config_{device}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(root)}
    return run_snakemake([SNAKEMAKE, "--cores", str(cores), "--configfile", str(path)], root, env, log)


def runtime(root: Path) -> dict[str, float]:
    with (root / "results" / "summary" / "runtime.csv").open() as f:
        return {r["rule"]: float(r["total_s"]) for r in csv.DictReader(f)}


def read(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def _index(rows: list[dict], keys: list[str]) -> dict[tuple, dict]:
    return {tuple(r.get(k, "") for k in keys): r for r in rows}


def _num(x: str | None) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def compare_runs(cpu: Path, dev: Path, device: str) -> dict:
    """Check 3 and the runs table: trained on the device, finite, accuracies close."""
    problems, n = [], 0
    for path in sorted((dev / "results" / "runs").rglob("metrics.json")):
        m = json.loads(path.read_text())
        n += 1
        if not str(m.get("device", "")).startswith(device):
            problems.append(f"{path.relative_to(dev)}: trained on {m.get('device')!r}, not {device}")
        if not all(math.isfinite(_num(m.get(k))) for k in ("train_loss", "test_loss")):
            problems.append(f"{path.relative_to(dev)}: non-finite loss")
    a, b = read(cpu / "results" / "summary" / "runs.csv"), read(dev / "results" / "summary" / "runs.csv")
    keys = [k for k in KEYS if a and k in a[0]]
    ib = _index(b, keys)
    worst = 0.0
    for r in a:
        o = ib.get(tuple(r.get(k, "") for k in keys))
        if o is None:
            problems.append(f"runs.csv: no device row for {[r.get(k) for k in keys]}")
            continue
        d = abs(_num(r["test_acc"]) - _num(o["test_acc"]))
        worst = max(worst, d)
        if not d <= TOLERANCES["acc_atol"]:
            problems.append(f"runs.csv {[r.get(k) for k in keys]}: test_acc {r['test_acc']} vs {o['test_acc']}")
    return {"checkpoints": n, "max_test_acc_diff": worst, "problems": problems}


def compare_measures(cpu: Path, dev: Path) -> dict:
    """Every measure value: floor pairs to ``floor_atol``, trained pairs to ``measure_atol``."""
    a, b = read(cpu / "results" / "summary" / "measures.csv"), read(dev / "results" / "summary" / "measures.csv")
    if not a:
        return {"compared": 0, "problems": ["no measures.csv in the CPU sweep"]}
    keys = [k for k in KEYS if k in a[0]]
    ib = _index(b, keys)
    problems, worst, n = [], {"floor": 0.0, "trained": 0.0}, 0
    for r in a:
        o = ib.get(tuple(r.get(k, "") for k in keys))
        if o is None:
            problems.append(f"measures.csv: no device row for {[r.get(k) for k in keys]}")
            continue
        x, y = _num(r.get("value")), _num(o.get("value"))
        if math.isnan(x) and math.isnan(y):
            continue
        n += 1
        kind = "floor" if r.get("control") == "floor" else "trained"
        tol = TOLERANCES["floor_atol"] if kind == "floor" else TOLERANCES["measure_atol"]
        # unbounded measures (distances, counts) are compared relative to their size
        d = abs(x - y) / max(1.0, abs(x))
        worst[kind] = max(worst[kind], d if math.isfinite(d) else math.inf)
        if not d <= tol:
            problems.append(f"{[r.get(k) for k in keys]}: {x} vs {y}")
    return {"compared": n, "max_diff": worst, "problems": problems[:50], "n_problems": len(problems)}


def _matched(cpu: Path, dev: Path, name: str) -> tuple[list[tuple[dict, dict]], list[str], list[str]]:
    """(CPU row, device row) pairs of summary table ``name`` matched on :data:`KEYS`, the rows without
    a device twin as problems, and the keys used."""
    a, b = read(cpu / "results" / "summary" / name), read(dev / "results" / "summary" / name)
    if not a:
        return [], [], []
    keys = [k for k in KEYS if k in a[0]]
    ib = _index(b, keys)
    pairs, problems = [], []
    for r in a:
        o = ib.get(tuple(r.get(k, "") for k in keys))
        if o is None:
            problems.append(f"{name}: no device row for {[r.get(k) for k in keys]}")
        else:
            pairs.append((r, o))
    return pairs, problems, keys


def compare_lmc(cpu: Path, dev: Path) -> dict:
    pairs, problems, keys = _matched(cpu, dev, "lmc.csv")
    n, worst = 0, 0.0
    for r, o in pairs:
        for q in ("loss", "error"):
            x, y = _num(r.get(f"{q}_barrier")), _num(o.get(f"{q}_barrier"))
            if math.isnan(x) and math.isnan(y):
                continue
            n += 1
            se = max(_num(r.get(f"{q}_barrier_se")), _num(o.get(f"{q}_barrier_se")))
            tol = max(TOLERANCES["barrier_se_factor"] * (se if math.isfinite(se) else 0.0), TOLERANCES["barrier_atol"])
            worst = max(worst, abs(x - y))
            if not abs(x - y) <= tol:
                problems.append(f"{[r.get(k) for k in keys]} {q}: {x} vs {y} (tolerance {tol:.3g})")
    return {"compared": n, "max_abs_diff": worst, "problems": problems}


def compare_rotation(cpu: Path, dev: Path) -> dict:
    pairs, problems, keys = _matched(cpu, dev, "rotation.csv")
    n, worst = 0, 0.0
    for r, o in pairs:
        for c in ("original_test_acc", "rotated_test_acc", "retrained_test_acc"):
            n += 1
            d = abs(_num(r.get(c)) - _num(o.get(c)))
            worst = max(worst, d)
            if not d <= TOLERANCES["acc_atol"]:
                problems.append(f"{[r.get(k) for k in keys]} {c}: {r.get(c)} vs {o.get(c)}")
    return {"compared": n, "max_acc_diff": worst, "problems": problems}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda, or cpu for the dry check")
    ap.add_argument("--config", default=str(REPO / "bench" / "paper_shaped.yaml"))
    ap.add_argument("--cpu-results", default=None, help="a finished CPU sweep of the same config (export root)")
    ap.add_argument("--rev", default="HEAD")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "gpu_check.json"))
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(Path(args.config).read_text())
    made: list[Path] = []
    result: dict = {"device": args.device, "config": str(Path(args.config).resolve()), "tolerances": TOLERANCES}
    try:
        roots = {}
        for which in ("cpu", "device"):
            if which == "cpu" and args.cpu_results:
                roots["cpu"] = Path(args.cpu_results)
                result["cpu"] = {"reused": str(roots["cpu"])}
                continue
            root = Path(tempfile.mkdtemp(prefix=f"convergent-gpu-check-{which}-"))
            made.append(root)
            export(args.rev, root)
            device = "cpu" if which == "cpu" else args.device
            run = sweep(root, config, device, args.cores, out.parent / f"gpu_check_{which}.snakemake.log")
            result[which] = {**run, "root": str(root)}
            roots[which] = root
            if run["rc"] != 0:
                raise RuntimeError(f"the {which} sweep failed ({run['rc']}); see {out.parent}/gpu_check_{which}.snakemake.log")
        t_cpu, t_dev = runtime(roots["cpu"]), runtime(roots["device"])
        missing = sorted(set(t_cpu) - set(t_dev))
        result["per_rule_s"] = {r: {"cpu_s": t_cpu[r], "device_s": t_dev.get(r),
                                    "speedup": round(t_cpu[r] / t_dev[r], 2) if t_dev.get(r) else None}
                                for r in sorted(t_cpu, key=t_cpu.get, reverse=True)}
        checks = {"stages": {"problems": [f"rule {r} has no runtime row on {args.device}" for r in missing]},
                  "runs": compare_runs(roots["cpu"], roots["device"], args.device),
                  "measures": compare_measures(roots["cpu"], roots["device"]),
                  "lmc": compare_lmc(roots["cpu"], roots["device"]),
                  "rotation": compare_rotation(roots["cpu"], roots["device"])}
        result["checks"] = checks
        result["passed"] = all(not c["problems"] for c in checks.values())
    finally:
        out.write_text(json.dumps(result, indent=2, default=str))
        if not args.keep:
            for root in made:
                shutil.rmtree(root, ignore_errors=True)
    print(f"{'rule':<24}{'cpu s':>10}{args.device + ' s':>10}{'speedup':>9}   (job seconds, runtime.csv)")
    for rule, t in result["per_rule_s"].items():
        print(f"{rule:<24}{t['cpu_s']:>10.1f}{(t['device_s'] or math.nan):>10.1f}{(t['speedup'] or math.nan):>9.2f}")
    for name, c in result["checks"].items():
        detail = {k: v for k, v in c.items() if k != "problems"}
        print(f"{name}: {'ok' if not c['problems'] else 'FAILED'} {detail} {c['problems'][:3]}")
    print(f"{'PASSED' if result['passed'] else 'FAILED'}; written {out}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
