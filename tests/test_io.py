"""Atomic outputs: nothing half-written ever sits at a final path."""

from __future__ import annotations

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
