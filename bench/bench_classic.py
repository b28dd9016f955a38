#!/usr/bin/env python
"""Cost of the classic measures (CCA, SVCCA, PWCCA, Procrustes, linear regression, RSA) from one moments file.

Not a test. Writes ``bench/out/bench_classic.json`` and ``bench/out/bench_classic.md``.

For a d-unit pair (default d = 512) built from n rows, the moments are saved to an ``.npz``,
loaded, and each new measure is timed from the loaded moments (best of ``--repeats``), beside
two floors measured in the same run on the same moments: linear CKA (``cka_linear``, the cheapest
measure: two d × d norms) and one symmetric d × d eigendecomposition (``numpy.linalg.eigh``, what
every CCA-family measure needs at least twice). The file is built at several n to show that the
cost does not depend on n (the moments are d × d whatever n is).

Also times the cross-layer table (:func:`convergent.measures.crosslayer.cross_layer_measures`)
at the test sizes (4 layers of 8–32 units, n = 200) and at a larger size (6 layers of 256
units, n = 2000).

Run::

    .venv/bin/python bench/bench_classic.py            # d = 512, n = 2000 and 20000 (~1 min)
    .venv/bin/python bench/bench_classic.py --d 256 --n 1000 5000
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def one_file(d: int, n: int, repeats: int, workdir: Path) -> dict:
    from convergent.measures import compute_measures
    from convergent.measures.classic import (cca, linreg_r2, procrustes_angle, pwcca, rsa_sqeuclid, svcca)
    from convergent.measures.cka import linear_cka
    from convergent.moments import load_moments, moments_from_arrays, save_moments

    rng = np.random.default_rng(1)
    k = 64
    Z = rng.standard_normal((n, k))
    X = np.maximum(Z @ rng.standard_normal((k, d)) + 0.5 * rng.standard_normal((n, d)), 0)
    Y = np.maximum(Z @ rng.standard_normal((k, d)) + 0.5 * rng.standard_normal((n, d)), 0)
    path = save_moments(workdir / f"classic_d{d}_n{n}.moments.npz",
                        moments_from_arrays(X, Y, alignment=False, meta={"view": "flatten", "layer": "bench"}))
    m = load_moments(path)
    cxx = m.cxx
    floors = {"cka_linear": best_of(lambda: linear_cka(m), repeats),
              "eigh_dxd": best_of(lambda: np.linalg.eigh(cxx), repeats)}
    measures = {
        "cca_mean+cca_r2": lambda: cca(m),
        "svcca[0.99]": lambda: svcca(m, variance_kept=0.99),
        "pwcca": lambda: pwcca(m),
        "procrustes (angle or distance)": lambda: procrustes_angle(m),
        "linreg_r2_a_from_b": lambda: linreg_r2(m, direction="a_from_b"),
        "rsa_sqeuclid (pearson or cosine)": lambda: rsa_sqeuclid(m),
    }
    secs = {name: best_of(fn, repeats) for name, fn in measures.items()}
    fams = {"enabled": ["cca", "shape", "linreg", "rsa"]}
    secs_all = best_of(lambda: compute_measures(m, fams), repeats)
    return {"d": d, "n": n, "file_mib": path.stat().st_size / 2**20, "floors_seconds": floors,
            "seconds": secs, "compute_measures_new_families_seconds": secs_all,
            "ratio_to_eigh": {k: v / floors["eigh_dxd"] for k, v in secs.items()},
            "ratio_to_cka_linear": {k: v / floors["cka_linear"] for k, v in secs.items()}}


def cross_layer(n: int, widths: list[int], repeats: int) -> dict:
    from convergent.measures.crosslayer import cross_layer_measures

    rng = np.random.default_rng(2)
    Z = rng.standard_normal((n, 16))

    def layers():
        out = {}
        for i, w in enumerate(widths):
            x = np.maximum(Z @ rng.standard_normal((16, w)) + rng.standard_normal((n, w)), 0)
            out[f"l{i}"] = x - x.mean(0)
        return out
    a, b = layers(), layers()
    secs = best_of(lambda: cross_layer_measures(a, b), repeats)
    return {"n": n, "widths": widths, "pairs": len(widths) ** 2, "seconds": secs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--n", type=int, nargs="+", default=[2000, 20000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE / "out")
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits

    res: dict = {"machine": platform.platform(), "python": platform.python_version(), "blas_threads": 1}
    with threadpool_limits(limits=1, user_api="blas"), tempfile.TemporaryDirectory() as tmp:
        res["files"] = [one_file(args.d, n, args.repeats, Path(tmp)) for n in args.n]
        res["cross_layer"] = [cross_layer(200, [8, 16, 32, 16], args.repeats),
                              cross_layer(2000, [256] * 6, 1)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_classic.json").write_text(json.dumps(res, indent=2))
    lines = [f"# classic measures from one moments file (1 BLAS thread; {res['machine']})", ""]
    for f in res["files"]:
        lines += [f"## d = {f['d']}, built from n = {f['n']} rows (file {f['file_mib']:.1f} MiB)", "",
                  f"floors: linear CKA {f['floors_seconds']['cka_linear'] * 1e3:.1f} ms, one d×d eigh "
                  f"{f['floors_seconds']['eigh_dxd'] * 1e3:.1f} ms; compute_measures(cca, shape, linreg, rsa) "
                  f"{f['compute_measures_new_families_seconds']:.3f} s", "",
                  "| measure | seconds | × eigh | × linear CKA |", "|---|---|---|---|"]
        lines += [f"| {k} | {v:.4f} | {f['ratio_to_eigh'][k]:.2f} | {f['ratio_to_cka_linear'][k]:.0f} |"
                  for k, v in f["seconds"].items()]
        lines.append("")
    lines += ["## cross-layer table (every measure, every layer pair)", "", "| n | widths | pairs | seconds |",
              "|---|---|---|---|"]
    lines += [f"| {c['n']} | {c['widths']} | {c['pairs']} | {c['seconds']:.2f} |" for c in res["cross_layer"]]
    (args.out / "bench_classic.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
