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
a moments file to its ``moments`` directory), and one ``.venv/bin/snakemake --forcerun ...``
command (runnable as printed) rebuilds them all together with everything downstream.

Work in progress is not damage. Snakemake's records in the working directory
(``<results>/../.snakemake``) tell the two apart (:class:`SnakemakeRecords`):

* its lock (``.snakemake/locks``): a sweep is running there, and the report says so;
* its incomplete markers: outputs of jobs that started and have not finished (running, or
  killed: the next run redoes them) are "not built yet", whatever state they are in;
* its metadata: a missing output no finished job ever recorded is "not built yet" (a sweep
  still running, stopped, or never asked for it); one a job recorded is deleted: damage.

Without those records (a copied results tree) a missing output of a run or group whose other
outputs exist counts as damage. Exit status 1 when damage is found, else 0 (a tree with
outputs not built yet included); no results directory at all: one line, exit 0.

    python -m convergent.check [--results results] [--configfile config.yaml ...]
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
import shlex
import sys
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from convergent.io import DIGEST_SUFFIX, DamagedOutputError, recorded_digest, snakemake_exe, verify_digest

#: outputs of rules `train` and `extract` in every run directory
RUN_OUTPUTS = ("model.pt", "init.pt", "metrics.json", "train_log.csv", "trained.zarr", "init.zarr")
#: outputs of rules `moments` and `measures` in every comparison group's directory
GROUP_OUTPUTS = ("moments", "measures.csv")
_RUN = re.compile(r"runs/[^/]+/[^/]+/w\d+/f\d+/s\d+(?:o\d+)?$")
_GROUP = re.compile(r"pairs/[^/]+/[^/]+/w\d+/f\d+/s\d+$")
#: a pair's folder inside a group's moments directory: {control}/s{a}-s{b}, a side may read s{seed}o{order}
_PAIR_KEY = re.compile(r"(?P<control>[^/]+)/s(?P<a>\d+(?:o\d+)?)-s(?P<b>\d+(?:o\d+)?)$")
#: seconds to wait before reading Snakemake's incomplete markers again while it holds the lock
RECHECK_S = 0.5
#: directories that hold Snakemake's own logs and benchmarks, not outputs a job reads
_SKIP_DIRS = {"logs", "benchmarks"}


@dataclass(frozen=True)
class Damage:
    """One damaged or missing output: ``path`` (the file, chunk file or directory), ``what`` went
    wrong, and ``rebuild``: the Snakemake output to force (a store, a moments directory, a file)."""

    path: Path
    what: str
    rebuild: Path

    @property
    def missing(self) -> bool:
        """A deleted (or never built) output rather than a damaged one."""
        return self.what.startswith("missing")


@dataclass
class SnakemakeRecords:
    """What Snakemake keeps in ``<workdir>/.snakemake`` (its file persistence backend, the
    default), as output paths relative to the working directory (``results/runs/...``).

    ``locks``: lock files (a Snakemake run holds the directory, or one was killed hard);
    ``incomplete``: outputs of jobs started and not finished; ``built``: outputs a finished
    job recorded, None when there are no records at all (a copied tree)."""

    workdir: Path
    locks: list[Path] = field(default_factory=list)
    incomplete: set[str] = field(default_factory=set)
    built: set[str] | None = None

    @classmethod
    def read(cls, results: Path) -> "SnakemakeRecords":
        workdir = results.parent
        meta = workdir / ".snakemake"
        rec = cls(workdir)
        if not meta.is_dir():
            return rec
        rec.locks = sorted((meta / "locks").glob("*.lock"))
        rec.incomplete = _decode_records(meta / "incomplete")
        # no record at all (a results tree copied next to a fresh .snakemake/ of a dry run) tells
        # nothing about what was built: judged as without records. But with incomplete markers a
        # real run started here and none of its jobs has finished yet (a fresh sweep whose first
        # jobs are writing their last outputs): nothing was built
        rec.built = _decode_records(meta / "metadata") or (set() if rec.incomplete else None)
        return rec

    def key(self, path: Path) -> str:
        """``path`` (under the results directory) as Snakemake records it: relative to the workdir."""
        return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(self.workdir))).as_posix()

    def interrupted(self, path: Path) -> bool:
        """Whether ``path`` is, or lies inside, an output of a job that started and did not finish."""
        key = self.key(path)
        return any(key == k or key.startswith(k + "/") for k in self.incomplete)

    def never_built(self, path: Path) -> bool:
        """Whether no finished job recorded the output ``path`` (False without records)."""
        return self.built is not None and self.key(path) not in self.built


def _decode_records(subject: Path) -> set[str]:
    """The output paths recorded under ``subject`` (``.snakemake/metadata`` or ``incomplete``):
    each file's path below it is the urlsafe base64 of the output path, split into parts whose
    all but the last start with ``@`` when it is longer than a file name may be."""
    out: set[str] = set()
    if not subject.is_dir():
        return out
    for dirpath, _, files in os.walk(subject):
        prefix = "".join(p.removeprefix("@") for p in Path(dirpath).relative_to(subject).parts)
        for name in files:
            try:
                out.add(base64.urlsafe_b64decode(prefix + name.removeprefix("@")).decode())
            except (binascii.Error, UnicodeDecodeError, ValueError):
                continue   # not a record (e.g. migration_underway)
    return out


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
    from convergent.nets.train import load_state

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


def _scan(root: Path) -> list[Damage]:
    """Every damaged or missing output under ``root`` (see the module doc), in path order,
    before telling work in progress apart."""
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


@dataclass
class CheckResult:
    """``damage``: built outputs that are damaged or deleted; ``not_built``: missing outputs no
    finished job recorded; ``interrupted``: outputs of jobs that started and did not finish
    (running, or killed); ``records``: what Snakemake recorded (its lock among them)."""

    damage: list[Damage]
    not_built: list[Damage]
    interrupted: list[Damage]
    records: SnakemakeRecords

    @property
    def in_progress(self) -> bool:
        """Whether a Snakemake run holds the working directory's lock."""
        return bool(self.records.locks)


def check(results: str | Path = "results") -> CheckResult:
    """Scan ``results`` and sort what is found into damage and work in progress (module doc).

    Snakemake's records are read before and after the scan: a job that starts meanwhile
    counts as interrupted (its outputs may vanish under the scan), and only outputs recorded
    before the scan count as built (a job finishing meanwhile is not mistaken for a deletion).
    """
    root = Path(results)
    if not root.is_dir():
        raise FileNotFoundError(f"no results directory at {root}")
    before = SnakemakeRecords.read(root)
    found = _scan(root)
    after = SnakemakeRecords.read(root)
    records = SnakemakeRecords(before.workdir, sorted({*before.locks, *after.locks}),
                               before.incomplete | after.incomplete, before.built)
    out = CheckResult([], [], [], records)
    for d in found:
        if records.interrupted(d.rebuild) or records.interrupted(d.path):
            out.interrupted.append(d)
        elif d.missing and records.never_built(d.rebuild):
            out.not_built.append(d)
        else:
            out.damage.append(d)
    if out.damage and records.locks:
        # a running Snakemake removes a job's old outputs (Job.prepare) a moment before it marks
        # them incomplete (Job.register): look once more before calling anything damaged
        time.sleep(RECHECK_S)
        records.incomplete |= SnakemakeRecords.read(root).incomplete
        late = [d for d in out.damage if records.interrupted(d.rebuild) or records.interrupted(d.path)]
        out.interrupted += late
        out.damage = [d for d in out.damage if d not in late]
    return out


def scrub(results: str | Path = "results") -> list[Damage]:
    """Every damaged or deleted built output under ``results`` (:func:`check`'s damage), in path order."""
    return check(results).damage


def rebuild_command(damage: Sequence[Damage], configfiles: Sequence[str] = (), cores: str = "all",
                    workdir: str | Path | None = None) -> str:
    """One ``snakemake --forcerun`` command that rebuilds every damaged output and what depends on
    it, runnable as printed from the current directory: this environment's Snakemake
    (:func:`convergent.io.snakemake_exe`), ``--snakefile`` when the current directory has none,
    ``--directory`` when the results' working directory is another one (targets relative to it)."""
    cwd = Path.cwd()
    workdir = Path(workdir) if workdir is not None else cwd
    same = os.path.abspath(workdir) == os.path.abspath(cwd)
    targets = sorted({os.path.relpath(os.path.abspath(d.rebuild), os.path.abspath(workdir)) if not same
                      else str(d.rebuild) for d in damage})
    parts = [*snakemake_exe(), "--cores", cores]
    if not (cwd / "Snakefile").is_file():
        parts += ["--snakefile", str(Path(__file__).resolve().parents[1] / "Snakefile")]
    if not same:
        parts += ["--directory", str(workdir)]
    if configfiles:
        parts += ["--configfile", *configfiles]
    parts += ["--forcerun", *targets]
    return " ".join(shlex.quote(p) for p in parts)


def _count(items: Sequence[Damage]) -> int:
    """Distinct outputs (Snakemake's) among ``items``."""
    return len({d.rebuild for d in items})


def report(result: CheckResult | Sequence[Damage], configfiles: Sequence[str] = ()) -> str:
    """The text ``make check`` prints (a bare list of damage is reported as damage)."""
    if not isinstance(result, CheckResult):
        result = CheckResult(list(result), [], [], SnakemakeRecords(Path.cwd()))
    damage, lines = result.damage, []
    if result.in_progress:
        unlock = " ".join([*snakemake_exe(), "--unlock"])
        workdir = os.path.abspath(result.records.workdir)
        lines.append(f"check: sweep in progress: a Snakemake run holds the lock on {workdir} "
                     f"(.snakemake/locks); outputs of jobs running or still to run are not built yet, and "
                     f"only finished outputs are checked. If no Snakemake runs there, a killed one left its "
                     f"lock: `{unlock}` removes it.")
    waiting = []
    if result.interrupted:
        state = "running" if result.in_progress else "interrupted (the next run redoes them)"
        waiting.append(f"{_count(result.interrupted)} output(s) of jobs {state}")
    if result.not_built:
        waiting.append(f"{_count(result.not_built)} output(s) of jobs not run yet")
    pending = f"; not built yet: {', '.join(waiting)}" if waiting else ""
    if not damage:
        return "\n".join([*lines, f"check: no damage found{pending}"])
    lines.append(f"check: {len(damage)} damaged or missing output(s){pending}:")
    lines += [f"  {d.path}: {d.what}" for d in damage]
    workdir = result.records.workdir
    lines += ["", "Rebuild them (and everything computed from them) with:",
              "  " + rebuild_command(damage, configfiles, workdir=workdir)]
    if not configfiles:
        lines.append("  (add the --configfile of the run that made these results)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m convergent.check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default="results", help="the results directory (default: results)")
    ap.add_argument("--configfile", nargs="*", default=[], help="config file(s) to name in the rebuild command")
    args = ap.parse_args(argv)
    if not Path(args.results).is_dir():
        print(f"check: no results directory at {args.results}: nothing has been built yet (make run builds it)")
        return 0
    result = check(args.results)
    print(report(result, args.configfile))
    return 1 if result.damage else 0


if __name__ == "__main__":
    sys.exit(main())
