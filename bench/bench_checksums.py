#!/usr/bin/env python
"""Benchmark: what the per-chunk CRC-32C checksum costs when reading an activation store.

Not a test. For each compression, writes the same ReLU activations (n × d float32, chunked
along samples) twice -- with the pipeline's codecs (compressor + crc32c, every chunk stored)
and with the compressor alone (the floor, as before checksums) -- then times a full read of
each through :class:`convergent.activations.ActivationStore` (which also wraps reads so a bad
chunk is named). Reports the best of ``--repeats`` reads and the ratio checksummed / floor,
both measured in the same run, and the time of ``make check``'s scrub of the checksummed store.

    .venv/bin/python bench/bench_checksums.py [--n 200000] [--d 256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def write(path: Path, x: np.ndarray, compression: str, checksum: bool, chunk_rows: int) -> None:
    from convergent import activations as A

    saved = A._codecs
    if not checksum:   # the floor: the store as written before checksums
        A._codecs = lambda c: A.compressors(c)
    try:
        with A.ActivationStoreWriter(path, len(x), chunk_rows=chunk_rows, compression=compression) as w:
            w.create("fc1", x.shape[1:])
            w.create("targets", (), dtype="int64")
            w.append("fc1", x)
            w.append("targets", np.zeros(len(x), dtype=np.int64))
    finally:
        A._codecs = saved


def read_seconds(path: Path, repeats: int) -> float:
    from convergent.activations import ActivationStore

    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for block, _ in ActivationStore(path).iter_view("fc1", "flatten"):
            block.sum()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--chunk-rows", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--compressions", nargs="+", default=["none", "lz4", "zstd"])
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = np.maximum(rng.standard_normal((args.n, args.d), dtype=np.float32), 0)
    print(f"n={args.n} d={args.d} ({x.nbytes / 2**20:.0f} MiB float32), chunk_rows={args.chunk_rows}, "
          f"best of {args.repeats}")
    print("| compression | floor read (s) | crc32c read (s) | ratio | scrub (s) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for comp in args.compressions:
            floor, checked = Path(tmp) / f"{comp}-floor.zarr", Path(tmp) / f"{comp}-crc.zarr"
            write(floor, x, comp, False, args.chunk_rows)
            write(checked, x, comp, True, args.chunk_rows)
            t_floor, t_crc = read_seconds(floor, args.repeats), read_seconds(checked, args.repeats)
            from convergent.check import check_store

            t = time.perf_counter()
            assert not list(check_store(checked))
            t_scrub = time.perf_counter() - t
            print(f"| {comp} | {t_floor:.3f} | {t_crc:.3f} | {t_crc / t_floor:.2f} | {t_scrub:.3f} |")


if __name__ == "__main__":
    main()
