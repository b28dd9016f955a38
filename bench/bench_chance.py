"""What the chance levels and the SE over examples cost: the moments pass and the measures, with
and without replicates, on the stores and moments files of a finished sweep.

    python bench/bench_chance.py results [--repeats 3]

For every (pair, layer) moments file under ``results/pairs``: compute_measures with the default
families (null worlds and jackknife replicates) against the same call with both family lists
empty (the floor: the measures as they were). For a sample of pairs, the streaming moments pass
with the default replicates against null_permutations = example_blocks = 0. Reports seconds and
ratios (same process, same files, interleaved), and the moments files' size.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def _time(fn, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("results", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--moments-pairs", type=int, default=6, help="pairs whose moments pass is timed")
    ap.add_argument("--every", type=int, default=1, help="time every k-th moments file only")
    args = ap.parse_args()

    from threadpoolctl import threadpool_limits

    from convergent.activations import ActivationStore
    from convergent.measures import compute_measures
    from convergent.moments import load_moments, streaming_moments

    files = sorted(args.results.glob("pairs/**/moments/**/*.npz"))[::args.every]
    if not files:
        raise SystemExit(f"no moments files under {args.results}/pairs")
    off = {"null_families": [], "se_families": []}
    t_on = t_off = 0.0
    size = 0
    with threadpool_limits(1, user_api="blas"):
        for f in files:
            m = load_moments(f)
            size += f.stat().st_size
            t_off += _time(lambda: compute_measures(m, off), args.repeats)
            t_on += _time(lambda: compute_measures(m), args.repeats)
    print(f"measures of {len(files)} (pair, layer) files: {t_off:.2f} s without replicates, {t_on:.2f} s with "
          f"(ratio {t_on / t_off:.2f})")
    print(f"moments files: {size / 2**20:.1f} MiB in all, {size / len(files) / 2**10:.0f} KiB each")

    # the moments pass, on the stores of the first pairs (each pair's two runs' activations)
    m_on = m_off = 0.0
    done = 0
    for f in files:
        if done >= args.moments_pairs:
            break
        loaded = load_moments(f)
        meta = (next(iter(loaded.values())) if isinstance(loaded, dict) else loaded).meta
        a, b = ActivationStore(meta["store_a"]), ActivationStore(meta["store_b"])
        layer = meta["layer"]
        m_off += _time(lambda: streaming_moments(a, b, layer, null_permutations=0, example_blocks=0, threads=1),
                       args.repeats)
        m_on += _time(lambda: streaming_moments(a, b, layer, threads=1), args.repeats)
        done += 1
    if done:
        print(f"moments pass of {done} (pair, layer): {m_off:.2f} s without replicates, {m_on:.2f} s with "
              f"(ratio {m_on / m_off:.2f})")


if __name__ == "__main__":
    main()
