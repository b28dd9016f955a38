"""Small file helpers: every output is written to a temporary sibling, then renamed.

A job killed half-way therefore never leaves a file at its final path that a later
run (or Snakemake's mtime logic) would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    import pandas as pd


class DamagedOutputError(RuntimeError):
    """An output a later job trusts fails its checksum, cannot be decoded, or is incomplete.

    The message names the file (for a Zarr store: the layer and the chunk) and how to rebuild it.
    """


def snakemake_exe(cwd: str | os.PathLike | None = None) -> list[str]:
    """The Snakemake command of this environment, runnable as printed from ``cwd`` (default: the
    current directory): the ``snakemake`` beside this interpreter (``.venv/bin/snakemake``,
    relative when it lies below ``cwd``), else this interpreter with ``-m snakemake``. A bare
    ``snakemake`` is on PATH only while the venv is active."""
    import sys

    exe = Path(sys.executable).with_name("snakemake")
    if not exe.is_file():
        return [sys.executable, "-m", "snakemake"]
    rel = os.path.relpath(exe, cwd or os.getcwd())
    return [rel if not rel.startswith("..") else str(exe)]


def rebuild_hint(path: str | os.PathLike) -> str:
    """What to run when the output ``path`` is damaged (added to every damage message)."""
    # deleting it is not enough: Snakemake does not rebuild a missing intermediate whose
    # downstream outputs are present ("Nothing to be done"); --forcerun rebuilds it and them
    return (f"Rebuild it and everything computed from it with `{' '.join(snakemake_exe())} --forcerun {path}` "
            f"(add your usual --cores and --configfile); `make check` lists every damaged output.")


class WriteError(OSError):
    """An OSError raised while writing an output, re-raised naming what was written: the file
    (for a store: the store, the array and the file). Keeps ``errno`` (28: the disk is full)."""


def write_error(err: BaseException, what: str) -> WriteError:
    """``err`` (an OSError, or torch's RuntimeError for a failed write) as a :class:`WriteError`
    naming ``what`` and the file the system call failed on, if it said."""
    errno_ = getattr(err, "errno", None)
    reason = getattr(err, "strerror", None) or (str(err).splitlines()[0] if str(err) else type(err).__name__)
    failed = getattr(err, "filename", None)
    where = f"{what} (at {failed})" if failed and str(failed) not in what else what
    text = f"{reason}, while writing {where}"
    return WriteError(errno_, text) if errno_ else WriteError(text)


@contextmanager
def naming_writes(what: str) -> Iterator[None]:
    """Re-raise an OSError inside the block as a :class:`WriteError` naming ``what`` (a file, or
    the array and store being written); one raised by an inner block that already names its
    file passes unchanged."""
    try:
        yield
    except WriteError:
        raise
    except OSError as err:
        raise write_error(err, what) from err


def umask_mode(base: int = 0o666) -> int:
    """``base`` less the process umask: the mode ``open()`` gives a new file (0o644 under the
    usual umask 022). Read by setting the umask and restoring it at once (the only portable way)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return base & ~mask


@contextmanager
def atomic_file(path: str | os.PathLike, what: str | None = None) -> Iterator[BinaryIO]:
    """Yield a binary file to fill; on success it replaces ``path`` whole (temp sibling, then
    ``os.replace``), on an exception ``path`` is untouched and the temporary file removed.

    The file gets the mode a plain ``open()`` would (:func:`umask_mode`): ``mkstemp`` creates
    0600, which a colleague on a shared cluster could not read. A failed write (a full disk)
    raises :class:`WriteError` naming ``what`` (default: ``path``). Every file the package writes
    goes through here (tables, JSON, checkpoints, moments, data caches)."""
    path = Path(path)
    with naming_writes(what or str(path)):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, umask_mode())
            with os.fdopen(fd, "wb") as fh:
                yield fh
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_file`). A failed write (a full disk)
    raises :class:`WriteError` naming ``path``."""
    with atomic_file(path) as fh:
        fh.write(data)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: str | os.PathLike) -> Any:
    """The JSON at ``path``; its recorded digest (if any) is checked first, and a file that does
    not parse raises :class:`DamagedOutputError` naming it."""
    verify_digest(path)
    try:
        return json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DamagedOutputError(f"{path} is not valid JSON ({err}). {rebuild_hint(path)}") from err


# --- digests: <file>.sha256 beside a file a later job trusts, in `sha256sum -c` format -------

DIGEST_SUFFIX = ".sha256"


def digest_path(path: str | os.PathLike) -> Path:
    """Where the digest of ``path`` is recorded: ``<path>.sha256`` (``sha256sum -c`` reads it)."""
    path = Path(path)
    return path.with_name(path.name + DIGEST_SUFFIX)


def sha256_file(path: str | os.PathLike, block: int = 1 << 20) -> str:
    """Hex SHA-256 of the bytes of ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def write_digest(path: str | os.PathLike) -> Path:
    """Record the SHA-256 of ``path`` (already written, complete) in ``<path>.sha256``, atomically.

    Written after the file itself: a job killed in between leaves a file without a digest,
    which Snakemake reruns anyway (the job did not finish).
    """
    path = Path(path)
    return atomic_write_bytes(digest_path(path), f"{sha256_file(path)}  {path.name}\n".encode())


def recorded_digest(path: str | os.PathLike) -> str | None:
    """The digest recorded for ``path``, or None if none was recorded."""
    side = digest_path(path)
    if not side.is_file():
        return None
    text = side.read_text().split()
    return text[0] if text else ""


def verify_digest(path: str | os.PathLike) -> bool:
    """Check ``path`` against its recorded digest: True if it matches, False if none was recorded.

    Raises :class:`DamagedOutputError` (naming the file and what to rerun) on a mismatch or
    when the file is gone but its digest remains.
    """
    want = recorded_digest(path)
    if want is None:
        return False
    if not Path(path).is_file():
        raise DamagedOutputError(f"{path} is missing (its digest {digest_path(path).name} remains). "
                                 f"{rebuild_hint(path)}")
    got = sha256_file(path)
    if got != want:
        raise DamagedOutputError(f"{path} does not match the SHA-256 recorded when it was written "
                                 f"({digest_path(path).name}: {want[:12]}…, file: {got[:12]}…): the file was "
                                 f"changed or damaged after its job finished. {rebuild_hint(path)}")
    return True


def write_csv(path: str | os.PathLike, frame: pd.DataFrame) -> Path:
    return atomic_write_bytes(path, frame.to_csv(index=False).encode())


def write_table(path: str | os.PathLike, frame: pd.DataFrame) -> Path:
    """A tidy table that later jobs read: :func:`write_csv`, then its SHA-256 beside it
    (:func:`write_digest`), so :func:`read_table` and ``make check`` see any later change."""
    out = write_csv(path, frame)
    write_digest(out)
    return out


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A CSV table, checked against its recorded digest first (when one was recorded); a damaged
    file raises :class:`DamagedOutputError` naming it and what to rerun."""
    import pandas as pd

    verify_digest(path)
    return pd.read_csv(path)


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of directory ``path`` to fill; rename it into place on success.

    A stale sibling left by a killed earlier attempt is removed first; on an exception the
    partial directory is removed and ``path`` is left absent, never half-written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with naming_writes(f"output directory {path}"):
            tmp.mkdir()
        yield tmp   # what the block writes names its own files (and a failed read is not a write)
        with naming_writes(f"output directory {path}"):
            if path.exists():
                shutil.rmtree(path)
            os.rename(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def tree_bytes(path: str | os.PathLike) -> int:
    """Bytes in the files under ``path`` (a file's own size; 0 if it does not exist)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.exists() else 0
