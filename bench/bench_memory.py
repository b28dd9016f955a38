"""The memory estimate (convergent.memory) against the peak RSS Snakemake measured.

Every network job (train, train_order, extract, extract_order, lmc, rotation) writes a
benchmark file whose ``max_rss`` (MB) is the job's peak resident memory; ``runtime.csv``
keeps the largest per rule. This reads each job's file and prints measured / estimated per
job, and the range per rule; the estimate's claim is 0.5 ≤ ratio ≤ 2 for every job.

Two sources:

* ``--results DIR --configfile FILE``: a finished sweep (the default one: ``results`` and
  ``config.yaml``);
* ``--presets configs/kornblith-small.yaml ...``: paper-shaped jobs. For each preset a copy
  with 1 epoch, its first two seeds, ``frozen_k: [0]``, without lmc and rotation, is run up to
  ``extract`` in a temporary directory (``--cores 2``): the jobs have the preset's data,
  architecture, widths, batch size and chunking (peak memory does not depend on the epochs).
  ``--widest`` keeps only each preset's largest width (``--max-width W``: of those ≤ W); ``--shapes32 N_TRAIN N_TEST`` puts
  shapes32 of that size in place of CIFAR (not available offline; the data term shrinks, the
  network's terms stay the paper's).

Also prints the resident memory of a fresh process after a train job's imports (what
:data:`convergent.memory.BASE_MB` stands for). Run from the repository root:

    PYTHONPATH=. .venv/bin/python bench/bench_memory.py --results results --configfile config.yaml
    PYTHONPATH=. .venv/bin/python bench/bench_memory.py --presets configs/li.yaml --widest --shapes32 1000 500
    PYTHONPATH=. .venv/bin/python bench/bench_memory.py --presets configs/kornblith-small.yaml
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
NETWORK_RULES = ("train", "extract", "lmc", "rotation")


def import_rss_mb() -> float:
    """Peak RSS (MB) of a fresh interpreter after the imports of a train and an extract job."""
    code = ("import resource, convergent.jobs, convergent.nets.train, convergent.nets.data, convergent.nets.extract, "
            "convergent.activations, snakemake.script; "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    return float(out.stdout.strip())


def job_ratios(results: Path, config: dict) -> list[dict]:
    """One row per network job benchmark under ``results/benchmarks``: rule, job, measured and
    estimated MB, their ratio."""
    from convergent.memory import extract_estimate, train_estimate
    from convergent.runtime import read_benchmark
    from convergent.sweep import plan_sweep

    sweep = plan_sweep(config)
    rows = []
    for rule in NETWORK_RULES:
        for tsv in sorted((results / "benchmarks" / rule).rglob("*.tsv")):
            parts = tsv.relative_to(results / "benchmarks" / rule).parts
            dataset, arch, width = parts[0], parts[1], int(parts[2][1:])
            exp = sweep.experiment(dataset, arch)
            if rule == "extract":
                est = extract_estimate(dataset, arch, width, exp.model, exp.extract, exp.data)
            else:
                est = train_estimate(dataset, arch, width, exp.model, exp.training, exp.data)
            _, rss = read_benchmark(tsv)
            rows.append({"rule": rule, "job": "/".join(parts)[:-4], "measured_mb": rss,
                         "estimate_mb": est.total_mb, "ratio": rss / est.total_mb})
    return rows


def summarise(rows: list[dict], title: str) -> bool:
    """Print the per-rule range of measured / estimated; True if every job is within 2x."""
    print(f"\n{title}: measured peak RSS / estimate, per rule (jobs, min, max; MB measured and estimated)")
    ok = True
    for rule in NETWORK_RULES:
        sel = [r for r in rows if r["rule"] == rule]
        if not sel:
            continue
        lo, hi = min(sel, key=lambda r: r["ratio"]), max(sel, key=lambda r: r["ratio"])
        inside = all(0.5 <= r["ratio"] <= 2 for r in sel)
        ok &= inside
        print(f"  {rule:9s} {len(sel):3d} jobs  ratio {lo['ratio']:.2f} ({lo['measured_mb']:.0f}/{lo['estimate_mb']})"
              f" … {hi['ratio']:.2f} ({hi['measured_mb']:.0f}/{hi['estimate_mb']})"
              f"  {'within 2x' if inside else 'OUTSIDE 2x'}")
    return ok


def run_preset(path: Path, workdir: Path, widest: bool = False, shapes32: list[int] | None = None,
               max_width: int | None = None) -> dict:
    """Run a preset's train and extract jobs, paper-shaped (see the module doc); its config."""
    config = yaml.safe_load(path.read_text())
    config = copy.deepcopy(config)
    sweep = config["sweep"]
    if max_width:
        sweep["widths"] = [w for w in sweep["widths"] if w <= max_width] or [min(sweep["widths"])]
    if widest:
        sweep["widths"] = [max(sweep["widths"])]
    if shapes32 and any(d.startswith("cifar") for d in sweep["datasets"]):
        sweep["datasets"] = ["shapes32"]
        config["data"] = {"shapes32": {"n_train": shapes32[0], "n_test": shapes32[1]}}
        sweep["extract"]["max_samples"] = min(sweep["extract"].get("max_samples") or shapes32[1],
                                              shapes32[1 if sweep["extract"].get("split", "test") == "test" else 0])
    sweep["seeds"] = sorted(sweep["seeds"])[:2]
    sweep["reference_seed"] = sweep["seeds"][0]
    sweep["frozen_k"] = [0]
    sweep["training"]["epochs"] = 1
    for ov in config.get("overrides") or []:
        ov.get("training", {}).pop("epochs", None)
    config["lmc"] = {"enabled": False}
    config["rotation"] = {"enabled": False}
    config["controls"] = {**(config.get("controls") or {}), "data_order": False}
    config["data_dir"] = str(workdir / "data")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    subprocess.run([str(Path(sys.executable).with_name("snakemake")), "--snakefile", str(REPO / "Snakefile"),
                    "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"), "--cores", "2",
                    "--until", "extract"], check=True, capture_output=True, text=True,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    from convergent.config import check_config

    return check_config(config)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path)
    ap.add_argument("--configfile", type=Path, default=REPO / "config.yaml")
    ap.add_argument("--presets", nargs="*", type=Path, default=[])
    ap.add_argument("--widest", action="store_true", help="only each preset's largest width")
    ap.add_argument("--max-width", type=int, help="only widths up to this (before --widest)")
    ap.add_argument("--shapes32", nargs=2, type=int, metavar=("N_TRAIN", "N_TEST"),
                    help="shapes32 of this size in place of CIFAR")
    args = ap.parse_args()
    from convergent.memory import BASE_MB

    print(f"process after a job's imports: {import_rss_mb():.0f} MB peak RSS (convergent.memory.BASE_MB = {BASE_MB})")
    ok = True
    if args.results:
        from convergent.config import check_files

        ok &= summarise(job_ratios(args.results, check_files([args.configfile])), f"{args.results} ({args.configfile})")
    for preset in args.presets:
        with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
            config = run_preset(preset, Path(tmp), args.widest, args.shapes32, args.max_width)
            sweep = config["sweep"]
            ok &= summarise(job_ratios(Path(tmp) / "results", config),
                            f"{preset.name} ({sweep['datasets'][0]} {config.get('data', {}).get('shapes32', '')}, "
                            f"widths {sweep['widths']}, 1 epoch, 2 seeds, frozen_k 0)")
    print("\nall within 2x" if ok else "\nSOME JOBS OUTSIDE 2x")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
