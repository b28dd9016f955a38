"""DAG scale: plan (snakemake -n) the issue's 20-seed sweep; job count, time and peak memory.

20 seeds × 6 widths × 4 frozen_k on an 8-layer MLP, merged into the embedded config.yaml with
every control (cross, floor, ceiling, data_order), LMC and rotation switched on. Planning
time and jobs per rule (Snakemake's job-stats table) are reported beside two floors measured
in the same run:

* ``snakemake_floor``: a trivial two-rule workflow (``touch`` outputs, no params, logs or
  resources) with as many jobs as the sweep: Snakemake's own planning cost for that many
  jobs, which no Snakefile can go below; ``sweep_over_snakemake_floor`` is the ratio;
* ``startup``: a dry run of the 2-seed, 1-width, 1-frozen_k sweep (interpreter start-up,
  imports and Snakefile parsing); ``sweep_ms_per_job_above_startup`` is what each further
  job costs.

    .venv/bin/python bench/bench_dag.py [--seeds 20 --widths 6 --frozen 4 --layers 8]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def merged(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` merged in, mappings key by key (as Snakemake merges --configfile)."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def sweep_config(seeds: int, widths: int, frozen: int, layers: int) -> dict:
    """The embedded config.yaml with the sweep's axes, every control, LMC and rotation on."""
    return merged(yaml.safe_load((REPO / "config.yaml").read_text()), {
        "sweep": {"datasets": ["digits"], "archs": ["mlp"], "widths": [16 * 2 ** i for i in range(widths)],
                  "frozen_k": list(range(frozen)), "seeds": list(range(seeds)),
                  "model": {"mlp": {"depth": layers}}},
        "controls": {"cross": True, "floor": True, "ceiling": True, "data_order": True},
        "lmc": {"enabled": True},
        "rotation": {"enabled": True},
    })


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
        start = time.perf_counter()
        with open(Path(tmp) / "out.txt", "w+") as out:
            proc = subprocess.Popen([SNAKEMAKE, "-n", "-q", "rules",
                                     "--snakefile", str(Path(tmp) / "Snakefile" if snakefile else REPO / "Snakefile"),
                                     "--directory", tmp, "--configfile", str(path), "--cores", "1"],
                                    stdout=out, stderr=subprocess.STDOUT)
            # wait4: this child's own peak RSS (ru_maxrss, KiB on Linux)
            _, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            output = out.read()
    if proc.returncode != 0:
        raise RuntimeError(output[-3000:])
    per_rule = job_stats(output)
    jobs = per_rule.pop("total", None)
    return {"jobs": jobs, "seconds": round(seconds, 2),
            "ms_per_job": round(1000 * seconds / jobs, 2) if jobs else None,
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "per_rule": per_rule}


def job_stats(output: str) -> dict[str, int]:
    """{rule: count, "total": n} from the first 'Job stats' table of Snakemake's output."""
    counts: dict[str, int] = {}
    for line in output.split("Job stats:", 1)[-1].splitlines():
        m = re.match(r"^(\S+)\s+(\d+)\s*$", line.strip())
        if m:
            counts[m.group(1)] = int(m.group(2))
            if m.group(1) == "total":
                break
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--widths", type=int, default=6)
    ap.add_argument("--frozen", type=int, default=4)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "dag.json"))
    args = ap.parse_args()
    startup = plan(sweep_config(2, 1, 1, args.layers))
    sweep_cfg = sweep_config(args.seeds, args.widths, args.frozen, args.layers)
    sweep = plan(sweep_cfg)
    # the trivial workflow has 2 jobs per i and rule all: as many jobs as the sweep, ±1
    floor = plan({"n": max(1, (sweep["jobs"] - 1) // 2)}, snakefile=TRIVIAL_SNAKEFILE)
    result = {
        "sweep_args": vars(args),
        "sweep_config": {k: sweep_cfg[k] for k in ("sweep", "controls", "lmc", "rotation")},
        "sweep": sweep,
        "snakemake_floor": floor,
        "sweep_over_snakemake_floor": round(sweep["seconds"] / floor["seconds"], 2),
        "startup": startup,
        "sweep_ms_per_job_above_startup": round(1000 * (sweep["seconds"] - startup["seconds"])
                                                / max(1, sweep["jobs"] - startup["jobs"]), 2),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"sweep ({args.seeds} seeds × {args.widths} widths × {args.frozen} frozen_k, {args.layers}-layer MLP): "
          f"{sweep['jobs']} jobs planned in {sweep['seconds']:.1f} s ({sweep['ms_per_job']} ms/job); "
          f"Snakemake floor ({floor['jobs']} trivial jobs): {floor['seconds']:.1f} s ({floor['ms_per_job']} ms/job); "
          f"sweep/floor {result['sweep_over_snakemake_floor']}; start-up (2-seed sweep, {startup['jobs']} jobs) "
          f"{startup['seconds']:.1f} s")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
