#!/usr/bin/env python
"""Benchmark of the dual (n × n Gram) moments form on CIFAR ResNet-18-shaped layers.

Not a test. Writes ``bench/out/bench_dual.json`` and ``bench/out/bench_dual.md``.

Activations shaped like a CIFAR ResNet-18 at width 64, every layer at its real
``flatten`` width (all wider than ``moments.max_features`` = 4096, so every one takes
the dual form)::

    stem    64 × 32 × 32 = 65,536     layer1  64 × 32 × 32 = 65,536
    layer2 128 × 16 × 16 = 32,768     layer3 256 ×  8 ×  8 = 16,384
    layer4 512 ×  4 ×  4 =  8,192

1. Synthetic activations of two networks (ReLU of a shared 32-dim latent through a
   different random projection per network, plus noise) are written to two Zarr stores
   by the pipeline's writer (2-D chunks: 256 rows × ~4096 features, lz4).
2. A fresh subprocess runs the moments pass (:func:`convergent.moments.streaming_moments`,
   the pipeline defaults: mixed precision, two threads = one per network, 1 BLAS thread
   each) over every layer of the pair, then, with ``--measures``, the dual-form measures
   (cka, kernels on all rows and on the subsample, alignment). It reports seconds per
   layer and its peak RSS (``VmHWM``), beside the peak after the imports.
3. The GEMM floor, timed in the same run: a float32 ``A @ B`` (n × 1024 by 1024 × n,
   n² · 1024 multiply-adds) in as many concurrent threads as the pass uses, 1 BLAS thread
   each; the floor of a layer is n² · (d_a + d_b) multiply-adds at that rate. The pass
   forms each Gram with a symmetric rank-k update (syrk: half the multiply-adds of the
   GEMM), so a ratio below 1 is possible.

Peak memory is compared with the n² term (two float64 n × n Grams, 16 n² bytes) and with
one d × d float64 matrix (8 d² bytes) of the widest layer, which the primal form would need
several of.

The full size (n = 10,000; 2.6 GB per layer per network, ~15 GB of stores) needs a bigger
machine; on the 2-core dev VM run a reduced n and say so::

    .venv/bin/python bench/bench_dual.py --n 2000 --measures
    .venv/bin/python bench/bench_dual.py --n 10000 --layers layer3 layer4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
#: CIFAR ResNet-18 at width 64: per-sample shape (channels, height, width) of each layer
LAYERS = {"stem": (64, 32, 32), "layer1": (64, 32, 32), "layer2": (128, 16, 16), "layer3": (256, 8, 8),
          "layer4": (512, 4, 4)}
LATENT = 32


def generate(path: Path, n: int, layers: list[str], seed: int, compression: str, chunk_rows: int = 256) -> None:
    """Write synthetic activations of one network: ReLU(z P_layer + noise), z a latent shared by both nets."""
    sys.path.insert(0, str(HERE.parent))
    from convergent.activations import ActivationStoreWriter

    latent = np.random.default_rng(0).standard_normal((n, LATENT)).astype(np.float32)   # shared by both nets
    rng = np.random.default_rng(seed)
    labels = np.argmax(latent[:, :10], axis=1).astype(np.int64)
    with ActivationStoreWriter(path, n, chunk_rows=chunk_rows, compression=compression) as w:
        for name in layers:
            w.create(name, LAYERS[name])
        w.create("targets", (), dtype="int64")
        w.append("targets", labels)
        for name in layers:
            shape = LAYERS[name]
            d = int(np.prod(shape))
            P = (rng.standard_normal((LATENT, d)) / np.sqrt(LATENT)).astype(np.float32)
            for s in range(0, n, chunk_rows):
                z = latent[s:s + chunk_rows]
                a = z @ P
                a += rng.standard_normal(a.shape, dtype=np.float32)
                np.maximum(a, 0, out=a)
                w.append(name, a.reshape(len(z), *shape))


def gemm_rate(n: int, threads: int, k: int = 1024, repeats: int = 2) -> float:
    """Multiply-adds per second of float32 n × k by k × n GEMMs run in ``threads`` concurrent
    threads with 1 BLAS thread each (the moments pass's setting)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(1)
    mats = [(rng.standard_normal((n, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32))
            for _ in range(threads)]
    best = np.inf
    with threadpool_limits(limits=1, user_api="blas"):
        for _ in range(repeats):
            def one(i: int) -> None:
                a, b = mats[i]
                _ = a @ b
            ths = [threading.Thread(target=one, args=(i,)) for i in range(threads)]
            t0 = time.perf_counter()
            for th in ths:
                th.start()
            for th in ths:
                th.join()
            best = min(best, time.perf_counter() - t0)
    return threads * n * n * k / best


def peak_rss() -> int:
    """Peak resident bytes of this process: ``VmHWM`` (reset by exec, unlike ``ru_maxrss``,
    which a child started by subprocess inherits from its parent's image)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(args: argparse.Namespace) -> None:
    """The measured part, in a fresh process: the pass over every layer (and the measures)."""
    sys.path.insert(0, str(HERE.parent))
    from convergent.activations import ActivationStore
    from convergent.measures import compute_measures
    from convergent.moments import streaming_moments

    base = peak_rss()
    sa, sb = ActivationStore(args.workdir / "a.zarr"), ActivationStore(args.workdir / "b.zarr")
    out = {"rss_after_imports": base, "layers": {}}
    params = {"enabled": ["cka", "kernels", "alignment"]}
    for layer in args.layers:
        t0 = time.perf_counter()
        m = streaming_moments(sa, sb, layer, ["flatten"], threads=args.threads)["flatten"]
        rec = {"pass_s": time.perf_counter() - t0, "form": m.form, "n_gram": m.n,
               "rss_after_pass": peak_rss()}
        if args.measures:
            t0 = time.perf_counter()
            table = compute_measures({"flatten": m}, params)
            rec["measures_s"] = time.perf_counter() - t0
            pick = table[table.parameter_value.isna() | table.measure.isin(["cka_rbf", "mutual_knn"])]
            rec["values"] = {f"{r.measure}{'' if np.isnan(r.parameter_value) else '@' + format(r.parameter_value, 'g')}":
                             r.value for r in pick.itertuples()}
        del m
        out["layers"][layer] = rec
    out["peak_rss"] = peak_rss()
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10000, help="images (rows) per store (default 10,000)")
    ap.add_argument("--layers", nargs="+", default=list(LAYERS), choices=list(LAYERS))
    ap.add_argument("--threads", type=int, default=2, choices=[1, 2], help="moments threads (one per network)")
    ap.add_argument("--measures", action="store_true", help="also time the dual-form measures per layer")
    ap.add_argument("--compression", default="lz4", choices=["lz4", "zstd", "none"])
    ap.add_argument("--workdir", type=Path, default=None, help="where the stores go (default: a temporary dir)")
    ap.add_argument("--keep", action="store_true", help="keep the stores")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_dual-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        for side, seed in (("a", 1), ("b", 2)):
            generate(workdir / f"{side}.zarr", args.n, args.layers, seed, args.compression)
        gen_s = time.perf_counter() - t0
        rate = gemm_rate(args.n, args.threads)
        cmd = [sys.executable, __file__, "--child", "--n", str(args.n), "--threads", str(args.threads),
               "--workdir", str(workdir), "--layers", *args.layers] + (["--measures"] if args.measures else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(HERE.parent)})
        if proc.returncode:
            sys.exit(proc.stderr)
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        # the GEMM floor after the pass too: the machine is shared, take the better of the two
        rate = max(rate, gemm_rate(args.n, args.threads))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    n = args.n
    rows, total_pass, total_floor = [], 0.0, 0.0
    for layer in args.layers:
        rec = res["layers"][layer]
        d = int(np.prod(LAYERS[layer]))
        floor = n * n * 2 * d / rate
        total_pass += rec["pass_s"]
        total_floor += floor
        rows.append({"layer": layer, "d": d, **rec, "floor_s": floor, "ratio": rec["pass_s"] / floor})
    dmax = max(int(np.prod(LAYERS[x])) for x in args.layers)
    summary = {"n": n, "layers": args.layers, "threads": args.threads, "compression": args.compression,
               "generate_s": gen_s, "gemm_rate_macs_per_s": rate, "pass_s": total_pass, "floor_s": total_floor,
               "ratio": total_pass / total_floor, "peak_rss_gib": res["peak_rss"] / 2**30,
               "rss_after_imports_gib": res["rss_after_imports"] / 2**30,
               "n2_term_gib": 16 * n * n / 2**30, "d2_matrix_gib": 8 * dmax * dmax / 2**30,
               "machine": f"{platform.node()} {os.cpu_count()} cpus", "rows": rows}
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "bench_dual.json").write_text(json.dumps(summary, indent=1))
    lines = [f"n = {n}, layers {', '.join(args.layers)}, {args.threads} threads, {args.compression} stores; "
             f"GEMM floor rate {rate / 1e9:.2f} G multiply-adds/s ({args.threads} threads × 1 BLAS thread, float32)",
             "", "| layer | d | form | Gram rows | pass s | floor s | pass / floor |"
             + (" measures s |" if args.measures else ""),
             "|---|---|---|---|---|---|---|" + ("---|" if args.measures else "")]
    for r in rows:
        lines.append(f"| {r['layer']} | {r['d']:,} | {r['form']} | {r['n_gram']:,} | {r['pass_s']:.1f} | "
                     f"{r['floor_s']:.1f} | {r['ratio']:.2f} |" + (f" {r['measures_s']:.1f} |" if args.measures else ""))
    lines += ["", f"All layers: pass {total_pass:.1f} s, floor {total_floor:.1f} s, ratio {total_pass / total_floor:.2f}.",
              f"Peak RSS {summary['peak_rss_gib']:.2f} GiB (after imports {summary['rss_after_imports_gib']:.2f} GiB); "
              f"n² term (two float64 n × n Grams) {summary['n2_term_gib']:.2f} GiB; one d × d float64 matrix of the "
              f"widest layer {summary['d2_matrix_gib']:.1f} GiB."]
    (out / "bench_dual.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.measures:
        print(json.dumps({layer: res["layers"][layer].get("values") for layer in args.layers}, indent=1))


if __name__ == "__main__":
    main()
