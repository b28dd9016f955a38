"""Atomic outputs: nothing half-written ever sits at a final path."""

from __future__ import annotations

import errno
import os

import pytest

from convergent.io import atomic_directory, atomic_write_bytes


def test_atomic_directory_appears_only_when_complete(tmp_path):
    target = tmp_path / "pair" / "moments"
    stale = tmp_path / "pair" / ".moments.tmp-999999"   # left by a killed earlier attempt
    stale.mkdir(parents=True)
    (stale / "fc1.npz").write_bytes(b"partial")
    with atomic_directory(target) as tmp:
        (tmp / "fc1.npz").write_bytes(b"one")
        assert not target.exists()
        (tmp / "fc2.npz").write_bytes(b"two")
    assert sorted(p.name for p in target.iterdir()) == ["fc1.npz", "fc2.npz"]
    assert [p.name for p in target.parent.iterdir()] == ["moments"]


def test_atomic_directory_failure_leaves_nothing(tmp_path):
    target = tmp_path / "moments"
    with pytest.raises(RuntimeError, match="layer 2 failed"):
        with atomic_directory(target) as tmp:
            (tmp / "fc1.npz").write_bytes(b"one")
            raise RuntimeError("layer 2 failed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_bytes_replaces_whole_file(tmp_path):
    path = tmp_path / "a" / "table.csv"
    atomic_write_bytes(path, b"old")
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert [p.name for p in path.parent.iterdir()] == ["table.csv"]


def test_tree_bytes_counts_nested_files(tmp_path):
    from convergent.io import tree_bytes

    (tmp_path / "s" / "c" / "0").mkdir(parents=True)
    (tmp_path / "s" / "zarr.json").write_bytes(b"x" * 10)
    (tmp_path / "s" / "c" / "0" / "0").write_bytes(b"x" * 1000)
    assert tree_bytes(tmp_path / "s") == 1010
    assert tree_bytes(tmp_path / "s" / "zarr.json") == 10
    assert tree_bytes(tmp_path / "missing") == 0


def test_tables_later_jobs_read_carry_a_digest_and_are_checked(tmp_path):
    import pandas as pd

    from convergent.io import DamagedOutputError, read_table, recorded_digest, write_table

    frame = pd.DataFrame({"measure": ["cka_linear", "svcca"], "value": [0.5, 0.25]})
    path = write_table(tmp_path / "summary" / "measures.csv", frame)
    assert recorded_digest(path) is not None
    pd.testing.assert_frame_equal(read_table(path), frame)
    path.write_text(path.read_text().replace("0.25", "0.26"))   # still a valid CSV: only the digest sees it
    with pytest.raises(DamagedOutputError, match="measures.csv does not match the SHA-256"):
        read_table(path)
    plain = tmp_path / "plain.csv"   # a table written without a digest (an older run) is read as it is
    frame.to_csv(plain, index=False)
    pd.testing.assert_frame_equal(read_table(plain), frame)


# --- a failed write names what it was writing (a full disk: errno 28) ------------------------

def _disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _FullDiskFile:
    """A file object whose every write fails as on a full disk."""

    def __init__(self, *_args, **_kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def write(self, *_args):
        _disk_full()

    def close(self):
        pass


def _assert_names(err, *parts):
    assert err.value.errno == errno.ENOSPC, err.value
    for part in parts:
        assert str(part) in str(err.value), (part, str(err.value))


def test_full_disk_names_the_file_of_an_atomic_write(tmp_path, monkeypatch):
    from convergent.io import WriteError, write_json

    monkeypatch.setattr("convergent.io.os.fdopen", _FullDiskFile)
    target = tmp_path / "runs" / "metrics.json"
    with pytest.raises(WriteError) as err:
        write_json(target, {"test_acc": 0.9})
    _assert_names(err, target, "No space left on device")
    assert isinstance(err.value, OSError) and not target.exists()
    assert [p.name for p in target.parent.iterdir()] == []   # the temporary file is gone too


def test_full_disk_names_the_checkpoint(tmp_path, monkeypatch):
    import torch

    from convergent.nets.train import save_state

    monkeypatch.setattr("convergent.nets.train.os.fdopen", _FullDiskFile)
    target = tmp_path / "model.pt"
    with pytest.raises(OSError) as err:
        save_state(torch.nn.Linear(2, 2), target)
    _assert_names(err, target, "checkpoint")


def test_full_disk_names_the_store_the_array_and_the_path(tmp_path, monkeypatch):
    import numpy as np
    import zarr.storage._local as local

    from convergent.activations import ActivationStoreWriter

    put = local._put
    # fail the chunk writes only (c/...): the store and its metadata were created fine
    monkeypatch.setattr(local, "_put", lambda path, value, exclusive=False:
                        _disk_full() if "/c/" in str(path) else put(path, value, exclusive))
    store = tmp_path / "runs" / "trained.zarr"
    with pytest.raises(OSError) as err:
        with ActivationStoreWriter(store, 8, chunk_rows=4) as w:
            w.create("fc1", (3,))
            w.append("fc1", np.ones((8, 3), np.float32))
    _assert_names(err, store, "'fc1'", f".trained.zarr.tmp-{os.getpid()}")
    assert not store.exists() and list(store.parent.iterdir()) == []


def test_full_disk_names_the_moments_file(tmp_path, monkeypatch):
    import numpy as np

    from convergent.moments import moments_from_arrays, save_moments

    monkeypatch.setattr("convergent.moments.storage.np.savez", _disk_full)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 3))
    target = tmp_path / "moments" / "cross" / "s0-s1" / "fc1.npz"
    with pytest.raises(OSError) as err:
        save_moments(target, moments_from_arrays(x, x))
    _assert_names(err, target, "moments file")
    assert list(target.parent.iterdir()) == []


def test_full_disk_names_the_output_directory(tmp_path, monkeypatch):
    from convergent.io import WriteError

    target = tmp_path / "pairs" / "moments"
    monkeypatch.setattr("convergent.io.os.rename", _disk_full)
    with pytest.raises(WriteError) as err:
        with atomic_directory(target) as tmp:
            (tmp / "fc1.npz").write_bytes(b"one")
    _assert_names(err, target)
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_a_failed_read_inside_an_output_directory_is_not_called_a_write(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        with atomic_directory(tmp_path / "moments"):
            open(tmp_path / "no-such-input.zarr")
    assert "while writing" not in str(err.value)


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_every_writer_respects_the_umask(tmp_path, umask, mask):
    """Tables, JSON, checkpoints and data caches get the mode ``open()`` would give (0644 under
    022), not mkstemp's 0600: a colleague sharing the group can read results/. (Moments files: the
    end-to-end test of an imported architecture stats every file under results/.)"""
    import numpy as np
    import torch

    from convergent.nets.data import _atomic_savez
    from convergent.io import umask_mode, write_json
    from convergent.nets.train import save_state

    umask(mask)
    want = 0o666 & ~mask
    assert umask_mode() == want
    written = [atomic_write_bytes(tmp_path / "results" / "t.csv", b"a,b\n"),
               write_json(tmp_path / "results" / "m.json", {"a": 1})]
    written.append(save_state(torch.nn.Linear(2, 2), tmp_path / "results" / "model.pt"))
    _atomic_savez(tmp_path / "results" / "cache.npz", {"x": np.zeros(3)})
    written.append(tmp_path / "results" / "cache.npz")
    plain = tmp_path / "plain"
    plain.write_bytes(b"")   # what open() gives under this umask: the reference
    for path in written:
        assert os.stat(path).st_mode & 0o777 == want == os.stat(plain).st_mode & 0o777, path
    assert umask(mask) == mask   # the helper left the process umask as it found it
