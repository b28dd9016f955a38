"""DAG scale: plan (snakemake -n) a paper-size sweep and report job count, time and peak memory.

10 seeds × 6 widths × 4 frozen_k on an 8-layer MLP with every control, LMC and rotation:
2,184 pairs × 8 layers = 17,472 (pair, layer) comparisons. Planning time is reported beside
two floors measured in the same run:

* ``floor``: a dry run of the 2-seed, 1-width, 1-frozen_k sweep (interpreter start-up,
  imports and Snakefile parsing), so the ratio says what the size of the DAG costs;
* ``snakemake_per_job``: a trivial two-rule workflow (``touch`` outputs, no params, logs or
  resources) with as many jobs as the sweep would have with one moments and one measures
  job per (pair, layer) — Snakemake's own planning cost per job, which no Snakefile can go
  below. It is why the comparison jobs are per pair (see rules/compare.smk).

    .venv/bin/python bench/bench_dag.py [--seeds 10 --widths 6 --frozen 4 --layers 8]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def sweep_config(seeds: int, widths: int, frozen: int, layers: int) -> dict:
    return {
        "sweep": {"datasets": ["digits"], "archs": ["mlp"], "widths": [16 * 2 ** i for i in range(widths)],
                  "frozen_k": list(range(frozen)), "seeds": list(range(seeds)),
                  "model": {"mlp": {"depth": layers}}},
    }


TRIVIAL_SNAKEFILE = """
N = int(config["n"])
rule all:
    input: expand("out/{i}.b", i=range(N))
rule b:
    input: "out/{i}.a"
    output: "out/{i}.b"
    shell: "touch {output}"
rule a:
    output: "out/{i}.a"
    shell: "touch {output}"
"""


def plan(config: dict, snakefile: str | None = None) -> dict:
    """Dry-run the workflow (or ``snakefile``'s text) on ``config``; wall time, peak RSS of the
    snakemake process, job count."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        if snakefile is not None:
            (Path(tmp) / "Snakefile").write_text(snakefile)
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.perf_counter()
        proc = subprocess.run([SNAKEMAKE, "-n", "-q", "rules",
                               "--snakefile", str(Path(tmp) / "Snakefile" if snakefile else REPO / "Snakefile"),
                               "--directory", tmp, "--configfile", str(path), "--cores", "1"],
                              capture_output=True, text=True)
        seconds = time.perf_counter() - start
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    total = re.search(r"^total\s+(\d+)", proc.stdout, re.M)
    return {"jobs": int(total.group(1)) if total else None, "seconds": round(seconds, 2),
            # ru_maxrss of children is a running maximum: only a rise is attributable to this call
            "peak_rss_mib": round(peak_kib / 1024, 1) if peak_kib > before else None}


def pair_layer_count(seeds: int, widths: int, frozen: int, layers: int) -> int:
    """(pair, layer) comparisons of the sweep: cross and floor pairs of every seed pair, one
    ceiling pair per cell."""
    pairs_per_cell = 2 * (seeds * (seeds - 1) // 2) + 1
    return pairs_per_cell * widths * frozen * layers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--widths", type=int, default=6)
    ap.add_argument("--frozen", type=int, default=4)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "dag.json"))
    args = ap.parse_args()
    floor = plan(sweep_config(2, 1, 1, args.layers))
    big = plan(sweep_config(args.seeds, args.widths, args.frozen, args.layers))
    comparisons = pair_layer_count(args.seeds, args.widths, args.frozen, args.layers)
    # the per-(pair, layer) design: the same sweep with moments + measures per comparison
    per_layer_jobs = big["jobs"] + 2 * comparisons - 2 * comparisons // args.layers
    trivial = plan({"n": per_layer_jobs // 2}, snakefile=TRIVIAL_SNAKEFILE)
    result = {"floor": floor, "sweep": big, "sweep_args": vars(args),
              "pair_layer_comparisons": comparisons,
              "snakemake_per_job": {**trivial, "ms_per_job": round(1000 * trivial["seconds"] / trivial["jobs"], 2)},
              "sweep_ms_per_job": round(1000 * big["seconds"] / big["jobs"], 2),
              "time_ratio": round(big["seconds"] / floor["seconds"], 2)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
