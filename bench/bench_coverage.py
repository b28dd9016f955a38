#!/usr/bin/env python
"""Coverage of the findings' 95 % intervals on simulated sweeps with a known truth (issue 21).

Not a test (``tests/test_coverage.py`` is the CI-sized check). Writes ``bench/out/bench_coverage.json``
and ``bench/out/bench_coverage.md``: for every scenario of :mod:`convergent.coverage` (a pair mean,
a per-network mean, a difference against the data-order ceiling, a slope over width), every interval
method of :data:`convergent.stats.METHODS` and every seed count, the fraction of simulated sweeps
whose interval contains the truth, the fraction with too few seeds for an interval (inconclusive),
and the mean interval width::

    nice -n 10 .venv/bin/python bench/bench_coverage.py --sweeps 1000 --seeds 3 5 10
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from convergent.coverage import SCENARIOS, coverage
from convergent.stats import METHODS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 5, 10])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--out", default="bench/out")
    args = parser.parse_args()
    rows = []
    for scenario in SCENARIOS:
        for seeds in args.seeds:
            for method in args.methods:
                start = time.perf_counter()
                c = coverage(scenario, seeds, sweeps=args.sweeps, method=method, seed=1000 + seeds)
                rows.append({"scenario": scenario, "seeds": seeds, "method": method, "sweeps": c.sweeps,
                             "coverage": c.rate, "inconclusive": c.inconclusive / c.sweeps,
                             "mean_width": c.mean_width, "seconds": time.perf_counter() - start})
                print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "bench_coverage.json.tmp"
    tmp.write_text(json.dumps(rows, indent=1))
    os.replace(tmp, out / "bench_coverage.json")
    lines = [f"Coverage of nominal 95 % intervals, {args.sweeps} simulated sweeps per cell "
             "(coverage among sweeps with an interval; mean width in brackets)", "",
             "| scenario | seeds | " + " | ".join(args.methods) + " |",
             "|---|---|" + "---|" * len(args.methods)]
    for scenario in SCENARIOS:
        for seeds in args.seeds:
            cells = {r["method"]: r for r in rows if r["scenario"] == scenario and r["seeds"] == seeds}
            lines.append(f"| {scenario} | {seeds} | " + " | ".join(
                f"{cells[m]['coverage']:.3f} ({cells[m]['mean_width']:.3f})" for m in args.methods) + " |")
    tmp = out / "bench_coverage.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, out / "bench_coverage.md")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
