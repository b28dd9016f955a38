"""Are two finished sweeps the same? Compare a results tree made before a change with one made after.

Used to check that a change meant to be invisible (job grouping, lazy imports, a data cache)
changes no result: run the same config with both versions of the code at the same thread
count, then

    .venv/bin/python bench/compare_results.py BEFORE/results AFTER/results [--atol 1e-12]

What must hold:

* every checkpoint (``runs/**/{model,init}.pt``) is byte-identical;
* every activation array of every Zarr store is identical (values, not file bytes: the
  store's metadata may carry other attributes);
* every moments file of every pair holds the same arrays to ``atol``, found by the pair's
  ``{control}/{label}`` and layer whatever the directory layout (per pair or per group);
* every summary table (``summary/*.csv`` except runtime) has the same rows (matched on its
  non-numeric and integer key columns) and its float columns agree to ``atol``; timing
  columns (``seconds``) are left out.

Prints one line per check and exits 1 on the first kind of difference it reports.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

#: columns that measure time, not results
TIMING_COLUMNS = {"seconds"}
#: summary tables that describe the run, not its results
SKIP_TABLES = {"runtime.csv"}
_PAIR_KEY = re.compile(r"(?P<key>[a-z_]+/s\d+(?:o\d+)?-s\d+(?:o\d+)?)")


def checkpoints(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.glob("runs/**/*.pt"))}


def store_arrays(root: Path) -> dict[str, np.ndarray]:
    import warnings

    import zarr

    warnings.filterwarnings("ignore", message=".*not recognized as a component of a Zarr hierarchy")
    out = {}
    for store in sorted(root.glob("runs/**/*.zarr")):
        group = zarr.open_group(store, mode="r")
        for name, arr in group.arrays():
            out[f"{store.relative_to(root).as_posix()}/{name}"] = arr[...]
    return out


def moments_files(root: Path) -> dict[str, Path]:
    """{``cell/control/label/layer``: path} of every moments file, per-pair or per-group layout."""
    out = {}
    for path in sorted(root.glob("pairs/**/*.npz")):
        rel = path.relative_to(root / "pairs").as_posix()
        cell = "/".join(rel.split("/")[:4])
        m = _PAIR_KEY.search(rel[len(cell):])
        out[f"{cell}/{m['key']}/{path.stem}"] = path
    return out


def compare_tables(a: pd.DataFrame, b: pd.DataFrame, atol: float) -> str | None:
    """None if equal (floats to ``atol``, NaN where NaN), else what differs."""
    if sorted(a.columns) != sorted(b.columns):
        return f"columns differ: {sorted(set(a.columns) ^ set(b.columns))}"
    cols = [c for c in a.columns if c not in TIMING_COLUMNS]
    keys = [c for c in cols if not pd.api.types.is_float_dtype(a[c])]
    if len(a) != len(b):
        return f"{len(a)} rows against {len(b)}"
    a = a[cols].sort_values(keys, kind="stable", ignore_index=True)
    b = b[cols].sort_values(keys, kind="stable", ignore_index=True)
    for c in cols:
        if pd.api.types.is_float_dtype(a[c]):
            x, y = a[c].to_numpy(float), b[c].to_numpy(float)
            same = np.isclose(x, y, rtol=0.0, atol=atol, equal_nan=True)
            if not same.all():
                return f"column {c}: {int((~same).sum())} values differ, largest by {np.nanmax(np.abs(x - y)):.3g}"
        elif not a[c].fillna("<NA>").astype(str).equals(b[c].fillna("<NA>").astype(str)):
            return f"column {c}: values differ"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--atol", type=float, default=1e-12)
    args = ap.parse_args(argv)
    failed = False

    def report(what: str, problems: list[str], n: int) -> None:
        nonlocal failed
        failed |= bool(problems)
        print(f"{what}: {n} compared, " + ("all equal" if not problems else f"{len(problems)} differ: {problems[:5]}"))

    ca, cb = checkpoints(args.before), checkpoints(args.after)
    report("checkpoints (bytes)", [k for k in ca.keys() | cb.keys() if ca.get(k) != cb.get(k)], len(ca))
    sa, sb = store_arrays(args.before), store_arrays(args.after)
    report("store arrays (values)", [k for k in sa.keys() | sb.keys()
                                     if k not in sa or k not in sb or not np.array_equal(sa[k], sb[k])], len(sa))
    ma, mb = moments_files(args.before), moments_files(args.after)
    problems = [k for k in ma.keys() ^ mb.keys()]
    for key in ma.keys() & mb.keys():
        with np.load(ma[key]) as za, np.load(mb[key]) as zb:
            if set(za.files) != set(zb.files) or any(
                    not np.allclose(za[f], zb[f], rtol=0.0, atol=args.atol, equal_nan=True)
                    if np.issubdtype(za[f].dtype, np.number) else not np.array_equal(za[f], zb[f])
                    for f in za.files):
                problems.append(key)
    report(f"moments files (atol {args.atol:g})", problems, len(ma))
    problems, n = [], 0
    for path in sorted((args.before / "summary").glob("*.csv")):
        if path.name in SKIP_TABLES:
            continue
        other = args.after / "summary" / path.name
        n += 1
        diff = "missing after" if not other.exists() else compare_tables(pd.read_csv(path), pd.read_csv(other),
                                                                            args.atol)
        if diff:
            problems.append(f"{path.name}: {diff}")
    report(f"summary tables (atol {args.atol:g})", problems, n)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
