#!/usr/bin/env python
"""Benchmark of the streaming moments pass and of the measures computed from it.

Not a test. Writes ``bench/out/bench_moments.json`` and ``bench/out/bench_moments.md``.

(a) wall time of one streaming moments pass over a Zarr pair (n × d float32,
    chunked along samples) as a ratio to a plain in-memory float32
    ``XᵀX + XᵀY + YᵀY`` on the same data in the same run, for several
    configurations (the "core" second moments only, the pipeline default with
    minibatch-CKA and alignment terms, and all-float64 products), plus a
    read-only pass showing the Zarr decoding share;
(b) peak memory (max RSS of a fresh subprocess doing only the pass, and of one
    doing only the imports) for every n, to show it does not grow with n;
(c) seconds for all measures from a saved moments file with d = 512 units;
(d) a published CKA package (``repsim`` from PyPI, n × n kernels) at the
    sizes it can handle, time, memory and value beside ours. Skipped with a
    message when it is not importable.

Full run (~45 min on the 2-core dev VM, ~8 GB of temporary Zarr data under --workdir)::

    .venv/bin/python bench/bench_moments.py

Quick run::

    .venv/bin/python bench/bench_moments.py --sizes 100000 200000 --measures-n 5000 --external-n 500

Only (a), for the core and default passes over uncompressed and lz4 stores, 7 repeats (~30 min)::

    .venv/bin/python bench/bench_moments.py --sizes 2000000 --parts timing --configs core default --compressions none lz4 --repeats 7
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
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
LAYER = "h"

_CORE = {"minibatch_size": 0, "alignment": False, "subsample_size": 0, "precision": "mixed"}
CONFIGS = {
    # name: streaming_moments keyword arguments (DEFAULT_MOMENT_PARAMS: threads 2, 1 BLAS thread each)
    "core": _CORE,                                           # the second moments only
    "core_1thread": {**_CORE, "threads": 1},                 # one thread + a prefetch thread
    "core_1thread_blas2": {**_CORE, "threads": 1, "blas_threads": None},
    "default": {},  # mixed precision, minibatch 256, alignment, subsample 1000
    "default_1thread": {"threads": 1},
    "default_float64": {"precision": "float64"},
}
#: the store compression used for (b), and the default of ``extract.compression``
DEFAULT_COMPRESSION = "lz4"


# ----------------------------------------------------------------------------- data

def make_pair(root: Path, n: int, d: int, chunk_rows: int, compression: str = DEFAULT_COMPRESSION,
              seed: int = 0) -> tuple[Path, Path]:
    """Two stores of correlated ReLU activations (n, d) float32 sharing a 64-d latent, 10 classes,
    written by the pipeline's own writer with ``compression``."""
    from convergent.activations import ActivationStoreWriter

    pa, pb = (root / f"n{n}_d{d}_{compression}" / "a.zarr", root / f"n{n}_d{d}_{compression}" / "b.zarr")
    if pa.exists() and pb.exists():
        return pa, pb
    rng = np.random.default_rng(seed)
    k = 64
    A, B = rng.standard_normal((k, d)).astype(np.float32), rng.standard_normal((k, d)).astype(np.float32)
    wa = ActivationStoreWriter(pa, n, chunk_rows=chunk_rows, attrs={"bench": True}, compression=compression)
    wb = ActivationStoreWriter(pb, n, chunk_rows=chunk_rows, attrs={"bench": True}, compression=compression)
    for w in (wa, wb):
        w.create(LAYER, (d,))
        w.create("targets", (), dtype="int64")
    step = 8 * chunk_rows
    for s in range(0, n, step):
        b = min(step, n - s)
        z = rng.standard_normal((b, k), dtype=np.float32)
        t = rng.integers(0, 10, b)
        z[np.arange(b), t] += 2.0                      # class structure, for the alignment measure
        wa.append(LAYER, np.maximum(z @ A + 0.5 * rng.standard_normal((b, d), dtype=np.float32), 0))
        wb.append(LAYER, np.maximum(z @ B + 0.5 * rng.standard_normal((b, d), dtype=np.float32), 0))
        wa.append("targets", t)
        wb.append("targets", t)
    wa.commit()
    wb.commit()
    return pa, pb


# ----------------------------------------------------------------------------- (a) timing

def timed(f: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole process: every thread, user + system) of ``f()``."""
    w0, c0 = time.perf_counter(), time.process_time()
    f()
    return time.perf_counter() - w0, time.process_time() - c0


class Floor:
    """Plain in-memory float32 XᵀX + XᵀY + YᵀY of the pair (loaded once, not timed).

    Call :meth:`measure` between the passes being compared: the machine may be shared, so
    the floor is sampled under the same conditions as they are and its best is kept.
    """

    def __init__(self, pa: Path, pb: Path):
        from convergent.activations import ActivationStore

        self.X = np.asarray(ActivationStore(pa).raw(LAYER)[:])
        self.Y = np.asarray(ActivationStore(pb).raw(LAYER)[:])
        self.samples: list[float] = []
        self.cpu_samples: list[float] = []

    def _product(self) -> None:
        X, Y = self.X, self.Y
        X.T @ X
        X.T @ Y
        Y.T @ Y

    def once(self) -> float:
        """Seconds of one floor product (not recorded)."""
        return timed(self._product)[0]

    def measure(self, repeats: int = 1) -> float:
        """Record ``repeats`` samples (wall and CPU seconds); the best wall time so far."""
        for _ in range(repeats):
            wall, cpu = timed(self._product)
            self.samples.append(wall)
            self.cpu_samples.append(cpu)
        return self.best

    @property
    def best(self) -> float:
        return float(min(self.samples))


def read_only_seconds(pa: Path, pb: Path) -> float:
    """One pass that only decodes the Zarr chunks of both stores."""
    from convergent.activations import ActivationStore

    a, b = ActivationStore(pa).raw(LAYER), ActivationStore(pb).raw(LAYER)
    step = a.chunks[0]
    t0 = time.perf_counter()
    for s in range(0, a.shape[0], step):
        np.asarray(a[s:s + step])
        np.asarray(b[s:s + step])
    return time.perf_counter() - t0


def moments_seconds(pa: Path, pb: Path, cfg: dict) -> tuple[float, float]:
    """(wall, process CPU) seconds of one moments pass with ``cfg`` over DEFAULT_MOMENT_PARAMS."""
    from convergent.activations import ActivationStore
    from convergent.moments import DEFAULT_MOMENT_PARAMS, streaming_moments

    kw = {**DEFAULT_MOMENT_PARAMS, **cfg, "views": ["flatten"]}
    return timed(lambda: streaming_moments(ActivationStore(pa), ActivationStore(pb), LAYER, **kw))


def paired_ratios(pa: Path, pb: Path, cfg: dict, repeats: int, floor: Floor
                  ) -> tuple[list[float], list[float], list[float]]:
    """``repeats`` passes, each followed by one floor product: (pass wall seconds, wall ratios,
    CPU ratios), each ratio pass / the floor right after it.

    On a shared machine whose speed drifts (the floor's own samples spread by up to 2x on the
    dev VM), a pass compared with the floor measured right after it is the fair ratio. The CPU
    ratio (all threads, user + system) is the work the pass does beyond the products: Zarr
    reading, building the blocks, and the extra columns.
    """
    passes, ratios, cpu_ratios = [], [], []
    for _ in range(repeats):
        wall, cpu = moments_seconds(pa, pb, cfg)
        floor.measure(1)
        passes.append(wall)
        ratios.append(wall / floor.samples[-1])
        cpu_ratios.append(cpu / floor.cpu_samples[-1])
    return passes, ratios, cpu_ratios


def store_mib(path: Path) -> float:
    from convergent.io import tree_bytes

    return tree_bytes(path) / 2**20


# ----------------------------------------------------------------------------- (b) memory

def _worker(args: argparse.Namespace) -> None:
    """Subprocess entry: do one thing, print JSON with wall time and max RSS."""
    t0 = time.perf_counter()
    out: dict = {}
    if args.worker == "imports":
        import zarr  # noqa: F401

        from convergent.moments import streaming_moments  # noqa: F401
    elif args.worker == "moments":
        from convergent.activations import ActivationStore
        from convergent.moments import DEFAULT_MOMENT_PARAMS, save_moments, streaming_moments

        kw = {**DEFAULT_MOMENT_PARAMS, **CONFIGS[args.config], "views": ["flatten"]}
        m = streaming_moments(ActivationStore(args.a), ActivationStore(args.b), LAYER, **kw)
        if args.save:
            save_moments(args.save, m)
    elif args.worker == "repsim":
        import repsim

        from convergent.activations import ActivationStore

        X = np.asarray(ActivationStore(args.a).raw(LAYER)[:args.n], dtype=np.float64)
        Y = np.asarray(ActivationStore(args.b).raw(LAYER)[:args.n], dtype=np.float64)
        t0 = time.perf_counter()
        out["value"] = float(repsim.cka([X, Y], kernel_type="linear", estimator="gretton")[0, 1])
    elif args.worker == "ours_small":
        from convergent.activations import ActivationStore
        from convergent.measures import linear_cka

        X = np.asarray(ActivationStore(args.a).raw(LAYER)[:args.n], dtype=np.float64)
        Y = np.asarray(ActivationStore(args.b).raw(LAYER)[:args.n], dtype=np.float64)
        t0 = time.perf_counter()
        out["value"] = linear_cka(X, Y)
    out["seconds"] = time.perf_counter() - t0
    out["max_rss_mib"] = peak_rss_mib()
    print(json.dumps(out))


def peak_rss_mib() -> float:
    """Peak resident set of this process (VmHWM; unlike ru_maxrss it is not inherited over fork+exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_worker(*argv: str, timeout: float | None = None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", *argv]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"worker {argv} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- (c) measures

def measures_seconds(d: int, n: int, workdir: Path) -> dict:
    """All measures (default params) from a saved moments file of a d-unit pair."""
    from convergent.measures import DEFAULT_PARAMS, compute_measures
    from convergent.moments import load_moments, moments_from_arrays, save_moments

    rng = np.random.default_rng(1)
    k = 64
    Z = rng.standard_normal((n, k))
    t = rng.integers(0, 10, n)
    Z[np.arange(n), t] += 2.0
    X = np.maximum(Z @ rng.standard_normal((k, d)) + 0.5 * rng.standard_normal((n, d)), 0)
    Y = np.maximum(Z @ rng.standard_normal((k, d)) + 0.5 * rng.standard_normal((n, d)), 0)
    m = moments_from_arrays(X, Y, t, n_classes=10, subsample_size=1000, minibatch_size=256,
                            meta={"view": "flatten", "layer": "bench"})
    path = save_moments(workdir / f"measures_d{d}.moments.npz", {"flatten": m, "positions": m})
    out = {"d": d, "n_rows_used_to_build": n, "file_mib": path.stat().st_size / 2**20, "families": {}}
    t0 = time.perf_counter()
    loaded = load_moments(path)
    out["load_seconds"] = time.perf_counter() - t0
    total = 0.0
    for fam in DEFAULT_PARAMS["enabled"]:
        t0 = time.perf_counter()
        df = compute_measures(loaded, {"enabled": [fam]})
        dt = time.perf_counter() - t0
        total += dt
        out["families"][fam] = {"seconds": dt, "rows": len(df)}
    t0 = time.perf_counter()
    df = compute_measures(loaded, {})
    out["all_seconds"] = time.perf_counter() - t0
    out["rows"] = len(df)
    out["sample"] = {r.measure + (f"[{r.parameter}={r.parameter_value:g}]" if r.parameter else ""): r.value
                     for r in df.itertuples() if r.measure in ("cka_linear", "cka_linear_debiased", "cka_minibatch",
                                                                "hungarian_mean_corr", "subspace_similarity")}
    return out


# ----------------------------------------------------------------------------- main

def external_rows(pair: tuple[Path, Path], sizes: list[int], timeout: float) -> dict:
    """repsim's CKA beside ours on the first ``n`` rows of ``pair``, each in a fresh process."""
    pa, pb = pair
    ext = {"package": "repsim", "rows": []}
    try:
        import repsim  # noqa: F401

        ext["version"] = getattr(repsim, "__version__", "?")
    except ImportError as err:
        ext["skipped"] = f"repsim not importable ({err}); `pip install repsim` to compare"
        print(ext["skipped"])
    if "skipped" not in ext:
        for n in sizes:
            row = {"n": n}
            try:
                r = run_worker("repsim", "--a", str(pa), "--b", str(pb), "--n", str(n), timeout=timeout)
                row.update(repsim_seconds=r["seconds"], repsim_max_rss_mib=r["max_rss_mib"],
                           repsim_value=r["value"])
            except subprocess.TimeoutExpired:
                row["repsim_timeout_seconds"] = timeout
            o = run_worker("ours_small", "--a", str(pa), "--b", str(pb), "--n", str(n))
            row.update(ours_seconds=o["seconds"], ours_max_rss_mib=o["max_rss_mib"], ours_value=o["value"])
            ext["rows"].append(row)
            print(json.dumps(row), flush=True)
    return ext


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[500_000, 1_000_000, 2_000_000])
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--chunk-rows", type=int, default=16384)
    ap.add_argument("--repeats", type=int, default=5, help="timing repeats (median paired ratio)")
    ap.add_argument("--timing-sizes", type=int, nargs="*", default=None,
                    help="sizes for (a) (default: the largest only)")
    ap.add_argument("--compressions", nargs="+", default=["none", "lz4", "zstd"],
                    help="store compressions timed in (a)")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS),
                    help="the pass configurations timed in (a)")
    ap.add_argument("--parts", nargs="+", default=["timing", "memory", "measures", "external"],
                    choices=["timing", "memory", "measures", "external"], help="(a) (b) (c) (d)")
    ap.add_argument("--measures-d", type=int, default=512)
    ap.add_argument("--measures-n", type=int, default=20_000)
    ap.add_argument("--external-n", type=int, nargs="*", default=[1000, 2000])
    ap.add_argument("--external-timeout", type=float, default=600)
    ap.add_argument("--workdir", type=Path, default=None, help="where the Zarr data go (default: a temp dir)")
    ap.add_argument("--keep-data", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "out")
    # worker mode (internal)
    ap.add_argument("--worker", choices=["imports", "moments", "repsim", "ours_small"], help=argparse.SUPPRESS)
    ap.add_argument("--a", help=argparse.SUPPRESS)
    ap.add_argument("--b", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--config", default="default", help=argparse.SUPPRESS)
    ap.add_argument("--save", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(args)
        return

    args.out.mkdir(parents=True, exist_ok=True)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_moments_"))
    workdir.mkdir(parents=True, exist_ok=True)
    res: dict = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                             "numpy": np.__version__, "platform": platform.platform()},
                 "d": args.d, "chunk_rows": args.chunk_rows, "sizes": args.sizes}
    try:
        pairs = {}
        for n in (args.sizes if {"memory", "external"} & set(args.parts) else []):
            t0 = time.perf_counter()
            pairs[n] = make_pair(workdir, n, args.d, args.chunk_rows)
            print(f"data n={n}: {time.perf_counter() - t0:.1f} s", flush=True)

        # (a) time ratios, per store compression
        from threadpoolctl import threadpool_limits

        res["timing"] = []
        for n in (args.timing_sizes or [max(args.sizes)]) if "timing" in args.parts else []:
            for compression in args.compressions:
                pa, pb = make_pair(workdir, n, args.d, args.chunk_rows, compression)
                floor = Floor(pa, pb)
                floor.measure(args.repeats)
                row = {"n": n, "compression": compression, "store_mib": store_mib(pa) + store_mib(pb),
                       "read_only_seconds": read_only_seconds(pa, pb)}
                with threadpool_limits(limits=1, user_api="blas"):
                    row["baseline_f32_1thread_seconds"] = min(floor.once() for _ in range(args.repeats))
                for name in args.configs:
                    passes, ratios, cpu_ratios = paired_ratios(pa, pb, CONFIGS[name], args.repeats, floor)
                    row[f"{name}_seconds"] = min(passes)
                    row[f"{name}_ratio"] = float(np.median(ratios))
                    row[f"{name}_ratios"] = ratios
                    row[f"{name}_cpu_ratio"] = float(np.median(cpu_ratios))
                row["baseline_f32_seconds"] = floor.best
                row["baseline_f32_samples"] = floor.samples
                row["baseline_f32_cpu_samples"] = floor.cpu_samples
                del floor
                res["timing"].append(row)
                print(json.dumps(row), flush=True)
                if compression != DEFAULT_COMPRESSION and not args.keep_data:
                    shutil.rmtree(pa.parent, ignore_errors=True)

        # (b) memory, fresh subprocess per n
        if "memory" in args.parts:
            res["imports_max_rss_mib"] = run_worker("imports")["max_rss_mib"]
            res["memory"] = []
            for n in args.sizes:
                pa, pb = pairs[n]
                r = run_worker("moments", "--a", str(pa), "--b", str(pb), "--config", "default",
                               "--save", str(workdir / f"m{n}.npz"))
                res["memory"].append({"n": n, "max_rss_mib": r["max_rss_mib"], "seconds": r["seconds"],
                                      "moments_file_mib": (workdir / f"m{n}.npz").stat().st_size / 2**20})
                print(json.dumps(res["memory"][-1]), flush=True)

        # (c) measures from a moments file
        if "measures" in args.parts:
            res["measures"] = measures_seconds(args.measures_d, args.measures_n, workdir)
            print(json.dumps(res["measures"]), flush=True)

        # (d) a published CKA package
        if "external" in args.parts:
            res["external"] = external_rows(pairs[min(args.sizes)], args.external_n, args.external_timeout)
    finally:
        if not args.keep_data and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    (args.out / "bench_moments.json").write_text(json.dumps(res, indent=2))
    (args.out / "bench_moments.md").write_text(to_markdown(res))
    print(to_markdown(res))


def to_markdown(res: dict) -> str:
    configs = [c for c in CONFIGS if any(f"{c}_ratio" in r for r in res.get("timing", []))]
    lines = [f"# Moments benchmark (d = {res['d']}, float32 Zarr, chunk {res['chunk_rows']} rows)", "",
             f"Machine: {res['machine']}", "", "## (a) moments pass vs in-memory float32 XᵀX + XᵀY + YᵀY", "",
             "Ratio = median over repeats of (pass s) / (floor s measured right after that pass), the floor",
             "with the default BLAS threads (2 here): the shared machine's speed drifts, so each pass is",
             "compared with a floor taken under the same conditions. Seconds are the best pass and the best",
             "floor. ``core``: the second moments only; ``default``:",
             "the pipeline default (+ minibatch CKA, alignment, subsample). Without a suffix the pass runs",
             "the two folds in two threads (``threads: 2``), each with 1 BLAS thread; ``_1thread``: one",
             "thread plus a prefetch thread decoding Zarr; ``_blas2``: that with 2 BLAS threads.",
             "``CPU``: the same paired median for process CPU seconds (all threads, user + system), i.e.",
             "the work the pass adds to the products (Zarr reading, block building, extra columns),",
             "which the machine's cores then share. ``store MiB``: both stores on disk.", "",
             "| n | compression | store MiB | baseline s | baseline 1 thread s | read-only Zarr s | "
             + " | ".join(f"{c} s (ratio)" for c in configs) + " |",
             "|---|---|---|---|---|---|" + "---|" * len(configs)]
    for r in res.get("timing", []):
        lines.append(f"| {r['n']:,} | {r.get('compression', '?')} | {r.get('store_mib', float('nan')):.0f} | "
                     f"{r['baseline_f32_seconds']:.2f} | "
                     f"{r.get('baseline_f32_1thread_seconds', float('nan')):.2f} | {r['read_only_seconds']:.2f} | "
                     + " | ".join(f"{r[c + '_seconds']:.2f} ({r[c + '_ratio']:.2f}; CPU {r[c + '_cpu_ratio']:.2f})"
                                  if c + "_cpu_ratio" in r else f"{r[c + '_seconds']:.2f} ({r[c + '_ratio']:.2f})"
                                  for c in configs) + " |")
    if "memory" in res:
        lines += ["", f"## (b) peak memory (max RSS of a fresh process; imports alone: "
                      f"{res['imports_max_rss_mib']:.0f} MiB)", "",
                  "| n | max RSS MiB | pass s | moments file MiB |", "|---|---|---|---|"]
        for r in res["memory"]:
            lines.append(f"| {r['n']:,} | {r['max_rss_mib']:.0f} | {r['seconds']:.1f} | "
                         f"{r['moments_file_mib']:.1f} |")
    m = res.get("measures")
    if m:
        lines += ["", f"## (c) all measures from a moments file, d = {m['d']} (file {m['file_mib']:.1f} MiB)", "",
                  f"load {m['load_seconds']:.2f} s; all families in one call {m['all_seconds']:.2f} s "
                  f"({m['rows']} rows)", "", "| family | s | rows |", "|---|---|---|"]
        for fam, v in m["families"].items():
            lines.append(f"| {fam} | {v['seconds']:.2f} | {v['rows']} |")
    e = res.get("external")
    if e:
        lines += ["", f"## (d) published package: {e['package']} {e.get('version', '')}", ""]
        if "skipped" in e:
            lines.append(e["skipped"])
        else:
            lines += ["| n | repsim s | repsim RSS MiB | repsim CKA | ours s | ours RSS MiB | ours CKA |",
                      "|---|---|---|---|---|---|---|"]
            for r in e["rows"]:
                if "repsim_seconds" in r:
                    rep = f"{r['repsim_seconds']:.2f} | {r['repsim_max_rss_mib']:.0f} | {r['repsim_value']:.6f}"
                else:
                    rep = f"timeout > {r['repsim_timeout_seconds']:.0f} | - | -"
                lines.append(f"| {r['n']:,} | {rep} | {r['ours_seconds']:.3f} | {r['ours_max_rss_mib']:.0f} | "
                             f"{r['ours_value']:.6f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
