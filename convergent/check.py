"""``make check``: scrub ``results/`` for damage and print the command that rebuilds it.

What is verified (every file is read in full):

* every recorded digest (``<file>.sha256``, written beside checkpoints, ``metrics.json`` and every
  table a later job reads: :func:`convergent.io.write_table`): the file must exist and match it;
* every chunk of every Zarr activation store: its CRC-32C checksum and its decoding (stores
  written before checksums existed are decoded only), the store's ``complete`` flag and that no
  chunk file is missing (zarr would read a missing chunk back as zeros);
* every moments file (``moments/*.npz``): the CRC-32 of each member of the zip;
* checkpoints without a recorded digest: that torch can read them;
* every other CSV and JSON file: that it parses;
* deleted intermediates: a run directory lacking one of the train/extract outputs, a comparison
  group's directory (``pairs/.../s{seed}``) lacking its moments or measures, a pair in its moments
  lacking the file of a layer its stores hold, a pair whose networks' stores are gone.

Each damaged output is mapped to the Snakemake output that contains it (a chunk to its store,
a moments file to its ``moments`` directory), and one ``snakemake --forcerun ...`` command
rebuilds them all together with everything downstream. Exit status 1 when damage is found.

    python -m convergent.check [--results results] [--configfile config.yaml ...]
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from convergent.io import DIGEST_SUFFIX, DamagedOutputError, recorded_digest, verify_digest

#: outputs of rules `train` and `extract` in every run directory
RUN_OUTPUTS = ("model.pt", "init.pt", "metrics.json", "train_log.csv", "trained.zarr", "init.zarr")
#: outputs of rules `moments` and `measures` in every comparison group's directory
GROUP_OUTPUTS = ("moments", "measures.csv")
_RUN = re.compile(r"runs/[^/]+/[^/]+/w\d+/f\d+/s\d+(?:o\d+)?$")
_GROUP = re.compile(r"pairs/[^/]+/[^/]+/w\d+/f\d+/s\d+$")
#: a pair's folder inside a group's moments directory: {control}/s{a}-s{b}, a side may read s{seed}o{order}
_PAIR_KEY = re.compile(r"(?P<control>[^/]+)/s(?P<a>\d+(?:o\d+)?)-s(?P<b>\d+(?:o\d+)?)$")
#: directories that hold Snakemake's own logs and benchmarks, not outputs a job reads
_SKIP_DIRS = {"logs", "benchmarks"}


@dataclass(frozen=True)
class Damage:
    """One damaged or missing output: ``path`` (the file, chunk file or directory), ``what`` went
    wrong, and ``rebuild``: the Snakemake output to force (a store, a moments directory, a file)."""

    path: Path
    what: str
    rebuild: Path


def _visible(path: Path, root: Path) -> bool:
    """Not inside a temporary sibling (``.name.tmp-*``) or a log/benchmark folder."""
    parts = path.relative_to(root).parts
    return not any(p.startswith(".") for p in parts) and not (parts and parts[0] in _SKIP_DIRS)


def _output_of(path: Path) -> Path:
    """The Snakemake output that contains ``path``: the enclosing ``*.zarr`` store or ``moments``
    directory, else the file itself."""
    for parent in [path, *path.parents]:
        if parent.suffix == ".zarr" or parent.name == "moments":
            return parent
    return path


def _files(root: Path, pattern: str) -> Iterator[Path]:
    for p in sorted(root.rglob(pattern)):
        if _visible(p, root):
            yield p


def check_digests(root: Path) -> Iterator[Damage]:
    """Every ``<file>.sha256``: the file exists and matches."""
    for side in _files(root, f"*{DIGEST_SUFFIX}"):
        target = side.with_name(side.name[: -len(DIGEST_SUFFIX)])
        try:
            verify_digest(target)
        except DamagedOutputError as err:
            what = "missing (its recorded digest remains)" if not target.exists() else "SHA-256 mismatch"
            yield Damage(target, f"{what}: {str(err).split('. Rebuild')[0]}", _output_of(target))


def check_store(store: Path) -> Iterator[Damage]:
    """One Zarr activation store: complete, no missing chunk, every chunk's checksum and decoding."""
    from convergent.activations import ActivationStore, IncompleteStoreError, first_bad_chunk

    try:
        s = ActivationStore(store)
    except (IncompleteStoreError, DamagedOutputError, OSError, ValueError) as err:
        yield Damage(store, f"unreadable store: {str(err).split(' Rebuild')[0]}", store)
        return
    for name in [*s.layers, "targets"]:
        arr = s.raw(name)._arr
        bad = first_bad_chunk(arr)
        if bad is not None:
            idx, err = bad
            key = arr.metadata.chunk_key_encoding.encode_chunk_key(idx)
            yield Damage(store / name / key, f"layer {name!r}, chunk {idx}: {type(err).__name__}: {err}", store)


def check_npz(path: Path) -> Iterator[Damage]:
    """A moments file: a readable zip whose every member passes its CRC-32."""
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
        if bad is not None:
            yield Damage(path, f"member {bad!r} fails its CRC-32", _output_of(path))
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        yield Damage(path, f"not a readable zip: {err}", _output_of(path))


def check_checkpoint(path: Path) -> Iterator[Damage]:
    """A checkpoint without a recorded digest (written before digests existed): torch can read it."""
    from convergent.train import load_state

    try:
        load_state(path)
    except DamagedOutputError as err:
        yield Damage(path, str(err).split(". Rebuild")[0], path)


def check_table(path: Path) -> Iterator[Damage]:
    """A CSV or JSON file parses."""
    try:
        if path.suffix == ".json":
            json.loads(path.read_text())
        else:
            import pandas as pd

            pd.read_csv(path)
    except Exception as err:   # pandas raises ParserError, UnicodeDecodeError, EmptyDataError, ...
        yield Damage(path, f"does not parse: {type(err).__name__}: {err}", _output_of(path))


def check_missing(root: Path) -> Iterator[Damage]:
    """Outputs deleted from a tree whose other outputs exist (a partial sweep is not damage:
    only a run or group directory that exists, or a pair whose network is gone, is checked)."""
    runs = {p for p in (root / "runs").glob("*/*/w*/f*/s*") if p.is_dir() and _RUN.search(p.as_posix())} \
        if (root / "runs").is_dir() else set()
    groups = [p for p in (root / "pairs").glob("*/*/w*/f*/s*") if p.is_dir() and _GROUP.search(p.as_posix())] \
        if (root / "pairs").is_dir() else []
    for group in groups:
        cell = group.parent.relative_to(root / "pairs")
        for name in GROUP_OUTPUTS:
            if not (group / name).exists():
                yield Damage(group / name, "missing (deleted?): its group directory exists", group / name)
        moments = group / "moments"
        pair_dirs = [p for p in moments.glob("*/s*-s*") if p.is_dir()] if moments.is_dir() else []
        for pair in pair_dirs:
            m = _PAIR_KEY.search(pair.relative_to(moments).as_posix())
            if not m:
                continue
            for side in (m["a"], m["b"]):
                runs.add(root / "runs" / cell / f"s{side}")
            state = "init" if m["control"] == "floor" else "trained"
            stores = [root / "runs" / cell / f"s{side}" / f"{state}.zarr" for side in (m["a"], m["b"])]
            layers = next((ls for ls in map(_store_layers, stores) if ls), [])
            for layer in layers:   # one moments file per compared layer
                if not (pair / f"{layer}.npz").exists():
                    yield Damage(pair / f"{layer}.npz", f"missing (deleted?): layer {layer!r} of "
                                 f"{stores[0].name}", moments)
    for run in sorted(runs):
        for name in RUN_OUTPUTS:
            if not (run / name).exists():
                yield Damage(run / name, "missing (deleted?): outputs of its run or pairs exist", run / name)


def _store_layers(store: Path) -> list[str]:
    """The layers a store holds (its group attribute ``layers``); [] if it cannot be read."""
    try:
        return list(json.loads((store / "zarr.json").read_text())["attributes"].get("layers", []))
    except (OSError, ValueError, KeyError, TypeError):
        return []


def scrub(results: str | Path = "results") -> list[Damage]:
    """Every damaged or missing output under ``results`` (see the module doc), in path order."""
    root = Path(results)
    if not root.is_dir():
        raise FileNotFoundError(f"no results directory at {root}")
    found: list[Damage] = [*check_digests(root), *check_missing(root)]
    for store in _files(root, "*.zarr"):
        if store.is_dir():
            found += check_store(store)
    for npz in _files(root, "*.npz"):
        found += check_npz(npz)
    for pt in _files(root, "*.pt"):
        if recorded_digest(pt) is None:
            found += check_checkpoint(pt)
    for pattern in ("*.csv", "*.json"):
        for f in _files(root, pattern):
            if ".zarr" not in f.as_posix() and recorded_digest(f) is None:
                found += check_table(f)
    unique: dict[Path, Damage] = {}
    for d in found:   # one entry per path (a deleted file with a digest is found twice)
        unique.setdefault(d.path, d)
    return sorted(unique.values(), key=lambda d: str(d.path))


def rebuild_command(damage: Sequence[Damage], configfiles: Sequence[str] = (), cores: str = "all") -> str:
    """One ``snakemake --forcerun`` command that rebuilds every damaged output and what depends on it."""
    targets = sorted({str(d.rebuild) for d in damage})
    parts = ["snakemake", "--cores", cores]
    if configfiles:
        parts += ["--configfile", *configfiles]
    parts += ["--forcerun", *targets]
    return " ".join(shlex.quote(p) for p in parts)


def report(damage: Sequence[Damage], configfiles: Sequence[str] = ()) -> str:
    """The text ``make check`` prints."""
    if not damage:
        return "check: no damage found"
    lines = [f"check: {len(damage)} damaged or missing output(s):"]
    lines += [f"  {d.path}: {d.what}" for d in damage]
    lines += ["", "Rebuild them (and everything computed from them) with:", "  " + rebuild_command(damage, configfiles)]
    if not configfiles:
        lines.append("  (add the --configfile of the run that made these results)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m convergent.check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default="results", help="the results directory (default: results)")
    ap.add_argument("--configfile", nargs="*", default=[], help="config file(s) to name in the rebuild command")
    args = ap.parse_args(argv)
    damage = scrub(args.results)
    print(report(damage, args.configfile))
    return 1 if damage else 0


if __name__ == "__main__":
    sys.exit(main())
