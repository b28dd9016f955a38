"""Activation stores: one Zarr v3 group per network, one array per layer.

Layout of a store (a directory ``activations.zarr``)::

    /<layer>    float32, shape (n, d) for dense layers, (n, c, l) or (n, c, h, w) for conv
                layers; chunked along samples, and for a layer wider than ``chunk_features``
                (4096) also along axis 1 (2-D chunks: row block × feature block, see
                :func:`chunk_shape`), so the dual moments form reads one feature block of
                all rows at a time; attrs: layer, axes, kind
    /targets    int64, shape (n,): class labels of the same samples, same order
    attrs       complete=True (set last), plus whatever the writer was given
                (dataset, split, run coordinates, ...)

Every array carries zarr v3 ``dimension_names`` (:func:`dimension_names`): ``sample``
first, then the layer's own axes (``<layer>_unit``; ``<layer>_channel``,
``<layer>_height``, ``<layer>_width``), so ``xarray.open_zarr`` reads a store as a
Dataset (one shared ``sample`` dimension, per-layer feature dimensions).

Axis 0 is always samples. Conv layers keep their spatial axes; the *reader*
chooses the view a measure needs (see :data:`VIEWS`):

* ``positions``: every spatial position of every image is a sample, channels are
  the features: (n·h·w, c) (Li et al. 2016, Wang et al. 2018).
* ``flatten``: one sample per image, c·h·w features (Kornblith et al. 2019).
* ``pool``: global average over positions: (n, c).

Dense layers look the same in every view. A *tokens* layer of an imported network (a
transformer's (n, tokens, d)) is stored as (n, d, tokens) (:data:`TOKEN_ATTRS`: axes
``sample, unit, token``, kind ``tokens``), so the same views read it: ``positions`` is the
tokens view (n·tokens, d), ``pool`` the mean over tokens (n, d), ``flatten`` (n, d·tokens).

A store is written into a sibling temporary directory and renamed into place
only when every array is complete, so an interrupted writer never leaves a
directory at the final path. Zarr reads missing chunks back silently as the fill
value, so readers also refuse a store whose ``complete`` flag is not set, or
whose arrays lack chunks.

Every chunk ends with a CRC-32C checksum (zarr v3 ``crc32c`` codec, after the
compressor): a flipped bit is found by the checksum rather than by luck in the
decompressor, and a reader that meets a bad chunk raises
:class:`~convergent.io.DamagedOutputError` naming the store, the layer, the chunk and
how to rebuild it (:func:`checked_read`).
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from convergent.io import DamagedOutputError, naming_writes, rebuild_hint

VIEWS = ("positions", "flatten", "pool")
TARGETS = "targets"


class IncompleteStoreError(RuntimeError):
    """The store at a path was not finished by its writer and must not be trusted."""


def _axes_for(ndim: int) -> list[str]:
    return {2: ["sample", "unit"], 3: ["sample", "channel", "length"],
            4: ["sample", "channel", "height", "width"]}[ndim]


#: attributes of a tokens layer's array (stored (n, d, tokens), see the module docstring)
TOKEN_ATTRS: dict[str, Any] = {"axes": ["sample", "unit", "token"], "kind": "tokens"}


#: a layer with more features per sample than this is chunked along axis 1 too (``extract.chunk_features``)
CHUNK_FEATURES = 4096


def chunk_shape(n_samples: int, chunk_rows: int, row_shape: tuple[int, ...],
                chunk_features: int = CHUNK_FEATURES) -> tuple[int, ...]:
    """Zarr chunk shape of an array (n_samples, *row_shape): ``chunk_rows`` samples, and for a
    row wider than ``chunk_features`` a block of axis 1 (channels of a conv layer, units of a
    dense one) holding about ``chunk_features`` features, all spatial positions included."""
    rows = min(int(chunk_rows), int(n_samples))
    if not row_shape:
        return (rows,)
    per = int(np.prod(row_shape[1:], dtype=np.int64))
    if row_shape[0] * per <= chunk_features:
        return (rows, *row_shape)
    return (rows, min(int(row_shape[0]), max(1, int(chunk_features) // per)), *row_shape[1:])


def dimension_names(name: str, ndim: int, axes: list[str] | None = None) -> tuple[str, ...]:
    """Zarr v3 ``dimension_names`` of array ``name``: ``("sample",)`` for targets, else
    ``sample`` and the layer's axes (``axes``, default by ``ndim``) prefixed by its name (a
    Dataset needs one size per name)."""
    if name == TARGETS:
        return ("sample",)
    return ("sample", *(f"{name}_{axis}" for axis in (axes or _axes_for(ndim))[1:]))


#: ``extract.compression`` choices: the trade between disk and the moments pass's read speed.
#: Measured on ReLU activations (bench/bench_moments.py): ``none`` reads at memory speed;
#: ``lz4`` (Blosc, byte shuffle) decodes ~3x faster than ``zstd`` but compresses less.
COMPRESSION = ("lz4", "zstd", "none")


def compressors(name: str) -> tuple[Any, ...] | None:
    """Zarr v3 compressor chain for a ``COMPRESSION`` name (``None``: store raw bytes)."""
    from zarr.codecs import BloscCodec, ZstdCodec

    if name == "none":
        return None
    if name == "lz4":
        return (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),)
    if name == "zstd":
        return (ZstdCodec(level=3),)
    raise ValueError(f"compression must be one of {', '.join(COMPRESSION)}; got {name!r}")


def _codecs(compression: str) -> tuple[Any, ...]:
    """Bytes-to-bytes codecs of every array: the ``compression`` chain, then a CRC-32C checksum
    of the compressed bytes (checked on every read, so corruption never decodes silently)."""
    from zarr.codecs import Crc32cCodec

    return (*(compressors(compression) or ()), Crc32cCodec())


#: every chunk is stored, even one that is all fill value (a dead layer's zeros): zarr skips those
#: by default, and then a deleted chunk could not be told from a skipped one
ARRAY_CONFIG = {"write_empty_chunks": True}


class ActivationStoreWriter:
    """Write a store atomically: arrays go to ``<path>.tmp-<pid>``, renamed on :meth:`commit`.

    Rows are appended in order with :meth:`append`; they are buffered and written
    one whole chunk at a time, so every chunk has exactly one writer.

    Use as a context manager; leaving the block with an exception removes the
    temporary directory and leaves nothing at ``path``.
    """

    def __init__(self, path: str | os.PathLike, n_samples: int, chunk_rows: int = 1024,
                 attrs: Mapping[str, Any] | None = None, compression: str = "lz4",
                 chunk_features: int = CHUNK_FEATURES):
        self._compressors = _codecs(compression)
        if n_samples <= 0:
            raise ValueError(f"n_samples must be positive, got {n_samples}")
        if chunk_rows <= 0:
            raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
        if chunk_features <= 0:
            raise ValueError(f"chunk_features must be positive, got {chunk_features}")
        self.chunk_features = int(chunk_features)
        self.path = Path(path)
        self.tmp_path = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.n_samples = int(n_samples)
        self.chunk_rows = int(chunk_rows)
        # a writer killed earlier (another pid) leaves its temporary sibling; nothing ever
        # reads one, so clear them all rather than let them pile up
        for stale in self.path.parent.glob(f".{self.path.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        with self._naming():
            self.tmp_path.parent.mkdir(parents=True, exist_ok=True)
            self._root = zarr.open_group(str(self.tmp_path), mode="w", zarr_format=3)
            self._root.attrs.update({**dict(attrs or {}), "compression": compression})
            self._root.attrs["complete"] = False
        self._arrays: dict[str, zarr.Array] = {}
        self._written: dict[str, int] = {}
        self._buffers: dict[str, list[np.ndarray]] = {}

    def create(self, name: str, row_shape: tuple[int, ...], dtype: str = "float32",
               attrs: Mapping[str, Any] | None = None) -> None:
        """Declare an array of shape ``(n_samples, *row_shape)``."""
        if name in self._arrays:
            raise ValueError(f"array {name!r} already declared")
        shape = (self.n_samples, *row_shape)
        with self._naming(name):
            arr = self._create(name, shape, dtype, row_shape, attrs)
        self._arrays[name] = arr
        self._written[name] = 0
        self._buffers[name] = []

    def _naming(self, name: str | None = None):
        """Re-raise a failed write (a full disk) naming the array, the store and its temporary copy."""
        array = f"array {name!r} of " if name else ""
        return naming_writes(f"{array}activation store {self.path} (written to {self.tmp_path})")

    def _create(self, name: str, shape: tuple[int, ...], dtype: str, row_shape: tuple[int, ...],
                attrs: Mapping[str, Any] | None) -> zarr.Array:
        arr = self._root.create_array(name, shape=shape, dtype=dtype, compressors=self._compressors,
                                      chunks=chunk_shape(self.n_samples, self.chunk_rows, tuple(row_shape),
                                                         self.chunk_features),
                                      dimension_names=dimension_names(name, len(shape), (attrs or {}).get("axes")),
                                      config=ARRAY_CONFIG)
        meta = {"layer": name, "axes": _axes_for(len(shape)) if name != TARGETS else ["sample"],
                "kind": "conv" if len(shape) > 2 else "dense"}
        meta.update(dict(attrs or {}))
        arr.attrs.update(meta)
        if name != TARGETS:
            self._root.attrs["layers"] = [*self._root.attrs.get("layers", []), name]
        return arr

    def append(self, name: str, rows: np.ndarray) -> None:
        """Append rows (axis 0 = samples) to array ``name``; writes whole chunks only."""
        arr = self._arrays[name]
        rows = np.asarray(rows)
        if rows.shape[1:] != arr.shape[1:]:
            raise ValueError(f"{name}: row shape {rows.shape[1:]} != declared {arr.shape[1:]}")
        if rows.dtype.kind == "f" and not np.isfinite(rows).all():
            bad = int(np.size(rows) - np.count_nonzero(np.isfinite(rows)))
            raise ValueError(f"{name}: {bad} non-finite activation values (NaN/Inf); refusing to store them")
        self._buffers[name].append(rows)
        self._flush(name, final=False)

    def _flush(self, name: str, final: bool) -> None:
        buf = self._buffers[name]
        pending = sum(len(b) for b in buf)
        if pending < self.chunk_rows and not final:
            return
        block = np.concatenate(buf, axis=0) if len(buf) > 1 else buf[0]
        start = self._written[name]
        whole = (len(block) // self.chunk_rows) * self.chunk_rows
        if final:
            whole = len(block)
        if start + whole > self.n_samples:
            raise ValueError(f"{name}: more than {self.n_samples} rows appended")
        if whole:
            with self._naming(name):
                self._arrays[name][start:start + whole] = block[:whole]
        self._written[name] = start + whole
        self._buffers[name] = [block[whole:]] if whole < len(block) else []

    def commit(self) -> Path:
        """Check every array is full, mark the store complete and rename it into place."""
        for name in self._arrays:
            if self._buffers[name]:
                self._flush(name, final=True)
            if self._written[name] != self.n_samples:
                raise ValueError(f"{name}: {self._written[name]} of {self.n_samples} rows written")
        with self._naming():
            self._root.attrs["complete"] = True
            if self.path.exists():
                shutil.rmtree(self.path)
            os.rename(self.tmp_path, self.path)
        return self.path

    def abort(self) -> None:
        shutil.rmtree(self.tmp_path, ignore_errors=True)

    def __enter__(self) -> "ActivationStoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif self.tmp_path.exists():
            self.commit()


class ActivationStore:
    """Read-only view of a complete store. Raises :class:`IncompleteStoreError` otherwise."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"no activation store at {self.path}")
        try:
            self._root = zarr.open_group(str(self.path), mode="r")
        except Exception as err:  # zarr raises several types for a broken group
            raise IncompleteStoreError(f"{self.path} is not a readable Zarr group: {err}") from err
        if self._root.attrs.get("complete") is not True:
            raise IncompleteStoreError(f"{self.path} was not completed by its writer; delete it and rerun extract")
        for name in self._array_names():
            try:
                arr = self._root[name]
            except KeyError:
                raise DamagedOutputError(f"{self.path}: its array {name!r} is missing (deleted?). "
                                         f"{rebuild_hint(self.path)}") from None
            missing = missing_chunks(arr)
            if missing:
                raise DamagedOutputError(f"{self.path}: layer {name!r} lacks {missing} of "
                                         f"{arr.nchunks} chunks (files deleted?); zarr would "
                                         f"read them back as zeros. {rebuild_hint(self.path)}")

    def _array_names(self) -> list[str]:
        """The store's arrays: the layers its writer recorded (attribute ``layers``) and ``targets``.

        Read from the attributes, not by listing the directory: Snakemake puts a
        ``.snakemake_timestamp`` file inside every ``directory()`` output, and zarr warns
        (ZarrUserWarning) about it whenever a group's members are listed. A store without
        the attribute (not written by :class:`ActivationStoreWriter`) is listed, with exactly
        that warning silenced.
        """
        order = self._root.attrs.get("layers")
        if order is not None:
            return [*order, TARGETS]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Object at \.snakemake_timestamp is not recognized")
            return list(self._root.array_keys())

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._root.attrs)

    @property
    def layers(self) -> list[str]:
        """Layer arrays in the order the writer declared them (``targets`` excluded)."""
        order = self._root.attrs.get("layers")
        return list(order) if order else sorted(n for n in self._array_names() if n != TARGETS)

    def raw(self, layer: str) -> "CheckedArray":
        """The Zarr array of ``layer``; reads raise :class:`DamagedOutputError` on a bad chunk."""
        return CheckedArray(self._root[layer], self.path, layer)

    @property
    def n_images(self) -> int:
        return int(self._root[TARGETS].shape[0])

    def targets(self) -> np.ndarray:
        """Class labels, shape (n_images,)."""
        return np.asarray(self.raw(TARGETS)[:])

    def view_shape(self, layer: str, view: str) -> tuple[int, int]:
        """(rows, features) of ``layer`` in ``view``: rows are samples in that view."""
        shape = self._root[layer].shape
        return view_shape(shape, view)

    def iter_view(self, layer: str, view: str, images_per_chunk: int | None = None
                  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(rows, targets)`` blocks of ``layer`` in ``view``, in sample order.

        ``rows`` is float32, shape (b_rows, features); ``targets`` has one label per row
        (repeated over positions in the ``positions`` view). Blocks follow the Zarr
        chunking unless ``images_per_chunk`` is given.
        """
        arr = self.raw(layer)
        targets = self.raw(TARGETS)
        step = images_per_chunk or arr.chunks[0]
        for start in range(0, arr.shape[0], step):
            stop = min(start + step, arr.shape[0])
            block = np.asarray(arr[start:stop])
            t = np.asarray(targets[start:stop])
            yield apply_view(block, view), repeat_targets(t, arr.shape, view)

    def read_view(self, layer: str, view: str) -> tuple[np.ndarray, np.ndarray]:
        """Whole layer in ``view`` in memory; for small data and tests."""
        blocks = list(self.iter_view(layer, view))
        return (np.concatenate([b for b, _ in blocks]), np.concatenate([t for _, t in blocks]))


def has_checksums(arr: zarr.Array) -> bool:
    """Whether ``arr`` was written with the crc32c codec (and every chunk stored, :data:`ARRAY_CONFIG`)."""
    return any(type(c).__name__ == "Crc32cCodec" for c in arr.metadata.codecs)


def missing_chunks(arr: zarr.Array) -> int:
    """Chunks of ``arr`` with no stored object; a store written with checksums has none. (An older
    store omits all-zero chunks by design, so it is not counted: 0.)"""
    if not has_checksums(arr):
        return 0
    return int(arr.nchunks) - int(arr.nchunks_initialized)


def checked_read(arr: zarr.Array, selection: Any, store: str | os.PathLike, layer: str) -> np.ndarray:
    """``arr[selection]`` as an array; a checksum mismatch or decode error becomes ONE
    :class:`DamagedOutputError` naming the store, the layer, the first bad chunk (its index and
    file) and what to run to rebuild the store."""
    try:
        return np.asarray(arr[selection])
    except Exception as err:
        first = selection[0] if isinstance(selection, tuple) and selection else selection
        rows = range(*first.indices(arr.shape[0])) if isinstance(first, slice) else None
        bad = first_bad_chunk(arr, rows if rows else None)
        if bad is None:    # every chunk decodes alone: not damage (e.g. a bad selection)
            raise
        idx, chunk_err = bad
        key = arr.metadata.chunk_key_encoding.encode_chunk_key(idx)
        raise DamagedOutputError(
            f"{store}: layer {layer!r}, chunk {tuple(idx)} (file {Path(store) / layer / key}) is damaged: "
            f"{type(chunk_err).__name__}: {chunk_err}. {rebuild_hint(store)}") from err


def first_bad_chunk(arr: zarr.Array, rows: range | None = None) -> tuple[tuple[int, ...], Exception] | None:
    """(chunk index, error) of the first chunk of ``arr`` that fails to read, or None.
    Reads every chunk (only those holding ``rows`` along axis 0, if given): a checksum (crc32c)
    mismatch or a decode error fails it."""
    import itertools

    grid = [range(-(-s // c)) for s, c in zip(arr.shape, arr.chunks)]
    if rows is not None and len(rows):
        grid[0] = range(min(rows) // arr.chunks[0], max(rows) // arr.chunks[0] + 1)
    for idx in itertools.product(*grid):
        try:
            arr.blocks[idx]
        except Exception as err:   # zarr/numcodecs raise ValueError, RuntimeError, ... per codec
            return tuple(int(i) for i in idx), err
    return None


class CheckedArray:
    """A read-only Zarr array whose reads name the store, layer and chunk when a chunk is damaged.

    Indexing returns a NumPy array (:func:`checked_read`); every other attribute (shape,
    chunks, ndim, dtype, attrs, ...) is the wrapped array's.
    """

    def __init__(self, arr: zarr.Array, store: str | os.PathLike, layer: str):
        self._arr, self._store, self._layer = arr, store, layer

    def __getitem__(self, selection: Any) -> np.ndarray:
        return checked_read(self._arr, selection, self._store, self._layer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._arr, name)

    def __len__(self) -> int:
        return len(self._arr)


def view_shape(shape: tuple[int, ...], view: str) -> tuple[int, int]:
    """Shape (rows, features) of an activation array of raw ``shape`` seen in ``view``."""
    _check_view(view)
    n, c, spatial = shape[0], shape[1] if len(shape) > 1 else 1, int(np.prod(shape[2:], dtype=np.int64))
    if len(shape) == 2:
        return n, c
    if view == "positions":
        return n * spatial, c
    if view == "flatten":
        return n, c * spatial
    return n, c


def apply_view(block: np.ndarray, view: str) -> np.ndarray:
    """Turn a raw block (b, c[, spatial...]) into a 2-D (rows, features) array."""
    _check_view(view)
    if block.ndim == 2:
        return block
    b, c = block.shape[:2]
    if view == "positions":
        # channel last, then every (image, position) is one row, image-major
        return np.moveaxis(block, 1, -1).reshape(-1, c)
    if view == "flatten":
        return block.reshape(b, -1)
    return block.reshape(b, c, -1).mean(axis=2)


def repeat_targets(targets: np.ndarray, raw_shape: tuple[int, ...], view: str) -> np.ndarray:
    """One label per row of the view: repeated over spatial positions for ``positions``."""
    if len(raw_shape) > 2 and view == "positions":
        return np.repeat(targets, int(np.prod(raw_shape[2:])))
    return targets


def _check_view(view: str) -> None:
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; allowed: {', '.join(VIEWS)}")
