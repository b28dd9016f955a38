"""Damage never passes silently: checksums on every output a later job trusts, readers that name
the damaged file (and the layer and chunk of a store), and `make check` (convergent.check), which
finds every planted damage in a small results tree -- and nothing in an intact one."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
import torch

from convergent.activations import ActivationStore, ActivationStoreWriter
from convergent.check import check, main, rebuild_command, scrub
from convergent.io import (DamagedOutputError, read_json, snakemake_exe, verify_digest, write_csv, write_digest,
                           write_json)
from convergent.moments import moments_from_arrays, save_moments
from convergent.nets.train import load_state, save_state
from tests.workflow import REPO

RUN = "runs/digits/mlp/w4/f0/s{seed}"
GROUP = "pairs/digits/mlp/w4/f0/s1"   # the comparison group of seed 1: its pairs' moments and measures
PAIR = GROUP + "/moments/cross/s0-s1"
N = 40


def _store(path, rng, compression="lz4"):
    with ActivationStoreWriter(path, N, chunk_rows=8, compression=compression) as w:
        w.create("fc1", (4,))
        w.create("targets", (), dtype="int64")
        w.append("fc1", np.maximum(rng.standard_normal((N, 4)), 0).astype(np.float32))
        w.append("targets", rng.integers(0, 3, N))


@pytest.fixture
def tree(tmp_path):
    """A tiny results tree with the layout of the workflow: two runs, one cross pair, a summary table."""
    rng = np.random.default_rng(0)
    root = tmp_path / "results"
    for seed in (0, 1):
        run = root / RUN.format(seed=seed)
        torch.manual_seed(seed)
        for name in ("model.pt", "init.pt"):
            save_state(torch.nn.Linear(4, 3), run / name)
        write_json(run / "metrics.json", {"test_acc": 0.9, "seed": seed})
        write_digest(run / "metrics.json")
        (run / "train_log.csv").write_text("epoch,train_loss\n1,0.5\n")
        for state in ("trained", "init"):
            _store(run / f"{state}.zarr", rng)
    X = rng.standard_normal((N, 4))
    save_moments(root / PAIR / "fc1.npz", moments_from_arrays(X, X @ rng.standard_normal((4, 4))))
    import pandas as pd

    write_csv(root / GROUP / "measures.csv", pd.DataFrame({"measure": ["cka_linear"], "value": [0.5]}))
    write_digest(root / GROUP / "measures.csv")
    write_csv(root / "summary" / "runs.csv", pd.DataFrame({"seed": [0, 1]}))
    return root


def _flip(path, offset=None):
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _member_data_offset(npz):
    """Byte offset of the data of the largest member of a zip (past its local header)."""
    import zipfile

    with zipfile.ZipFile(npz) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    raw = npz.read_bytes()
    name_len, extra_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    return info.header_offset + 30 + name_len + extra_len + info.compress_size // 2


def test_intact_tree_has_no_damage(tree, capsys):
    assert scrub(tree) == []
    assert main(["--results", str(tree)]) == 0
    assert "no damage found" in capsys.readouterr().out


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
def test_corrupt_chunk_is_caught_by_its_checksum_and_named(tmp_path, compression):
    store = tmp_path / "trained.zarr"
    _store(store, np.random.default_rng(1), compression)
    chunk = store / "fc1" / "c" / "2" / "0"
    _flip(chunk)
    with pytest.raises(DamagedOutputError) as err:
        ActivationStore(store).read_view("fc1", "flatten")
    text = str(err.value)
    assert str(store) in text and "'fc1'" in text and "chunk (2, 0)" in text and str(chunk) in text
    assert "checksum" in text.lower()          # found by the crc32c codec, not by luck
    assert f"snakemake --forcerun {store}" in text
    # the moments pass reads through the same wrapper
    with pytest.raises(DamagedOutputError, match=r"chunk \(2, 0\)"):
        ActivationStore(store).raw("fc1")[0:N]


def test_deleted_chunk_is_refused_not_read_as_zeros(tmp_path):
    store = tmp_path / "trained.zarr"
    _store(store, np.random.default_rng(1))
    (store / "fc1" / "c" / "1" / "0").unlink()
    with pytest.raises(DamagedOutputError, match=r"layer 'fc1' lacks 1 of 5 chunks"):
        ActivationStore(store)


def test_truncated_checkpoint_names_its_path(tmp_path):
    path = save_state(torch.nn.Linear(3, 2), tmp_path / "model.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DamagedOutputError) as err:
        load_state(path)
    assert str(path) in str(err.value) and "SHA-256" in str(err.value) and "--forcerun" in str(err.value)
    # without a recorded digest (a checkpoint from before digests), the decode error names the path
    (tmp_path / "model.pt.sha256").unlink()
    with pytest.raises(DamagedOutputError, match=rf"checkpoint {path} cannot be read"):
        load_state(path)


def test_digest_mismatch_of_metrics_json(tmp_path):
    path = write_json(tmp_path / "metrics.json", {"test_acc": 0.91})
    write_digest(path)
    assert verify_digest(path) is True
    path.write_text(path.read_text().replace("0.91", "0.99"))   # still valid JSON: only the digest sees it
    with pytest.raises(DamagedOutputError, match="metrics.json does not match the SHA-256"):
        read_json(path)


def test_check_finds_every_planted_damage(tree, capsys):
    store = tree / RUN.format(seed=1) / "trained.zarr"
    model = tree / RUN.format(seed=0) / "model.pt"
    init_store = tree / RUN.format(seed=0) / "init.zarr"
    measures = tree / GROUP / "measures.csv"
    npz = tree / PAIR / "fc1.npz"
    _flip(store / "fc1" / "c" / "3" / "0")                     # a corrupt chunk
    model.write_bytes(model.read_bytes()[:100])                # a truncated checkpoint
    import shutil

    shutil.rmtree(init_store)                                  # a deleted intermediate (a store)
    measures.unlink()                                          # ... and a deleted file with a digest
    _flip(npz, offset=_member_data_offset(npz))                # a corrupt moments file
    (tree / GROUP / "moments/floor/s0-s1").mkdir(parents=True)   # a floor pair without its fc1.npz
    (tree / "pairs/digits/mlp/w4/f0/s2/moments").mkdir(parents=True)   # a group without its measures
    (tree / "summary" / "runs.csv").write_bytes(b"\xff\xfe\x00bad\"")   # an unparsable table
    damage = scrub(tree)
    paths = {d.path for d in damage}
    assert store / "fc1" / "c" / "3" / "0" in paths
    floor = tree / GROUP / "moments/floor/s0-s1"
    assert {model, init_store, measures, npz, tree / "summary" / "runs.csv", floor / "fc1.npz",
            tree / "pairs/digits/mlp/w4/f0/s2/measures.csv"} <= paths
    rebuild = {d.rebuild for d in damage}
    assert {store, model, init_store, measures, tree / GROUP / "moments"} <= rebuild
    chunk = next(d for d in damage if d.path == store / "fc1" / "c" / "3" / "0")
    assert "'fc1'" in chunk.what and "(3, 0)" in chunk.what
    assert main(["--results", str(tree), "--configfile", "my.yaml"]) == 1
    out = capsys.readouterr().out
    cmd = rebuild_command(damage, ["my.yaml"], workdir=tree.parent)
    assert cmd in out and cmd.startswith(" ".join(snakemake_exe()) + " --cores all ")
    assert f"--directory {tree.parent} --configfile my.yaml --forcerun " in cmd
    for target in (store, model, init_store, measures):   # relative to the workdir, as Snakemake names them
        assert f" {target.relative_to(tree.parent)}" in cmd


def test_check_cli_and_make_target(tree):
    proc = subprocess.run([sys.executable, "-m", "convergent.check", "--results", str(tree)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "check:" in (REPO / "Makefile").read_text() and "convergent.check" in (REPO / "Makefile").read_text()
    (tree / RUN.format(seed=0) / "init.pt").write_bytes(b"")
    proc = subprocess.run([sys.executable, "-m", "convergent.check", "--results", str(tree)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1 and "init.pt" in proc.stdout and "--forcerun" in proc.stdout


def test_dead_layer_chunks_are_stored_and_not_mistaken_for_deleted(tmp_path):
    """zarr skips all-zero chunks by default; a dead ReLU layer is all zeros. The writer stores
    every chunk, so a missing chunk always means damage."""
    store = tmp_path / "dead.zarr"
    with ActivationStoreWriter(store, N, chunk_rows=8) as w:
        w.create("fc1", (4,))
        w.create("targets", (), dtype="int64")
        w.append("fc1", np.zeros((N, 4), dtype=np.float32))
        w.append("targets", np.zeros(N, dtype=np.int64))
    assert len(list((store / "fc1" / "c").rglob("*"))) >= 5
    x, _ = ActivationStore(store).read_view("fc1", "flatten")
    assert not x.any()
    assert scrub(tmp_path) == []
    (store / "fc1" / "c" / "4" / "0").unlink()
    assert [d.rebuild for d in scrub(tmp_path)] == [store]


# --- work in progress is not damage -----------------------------------------------------------

def _record(workdir, subject, output):
    """Record ``output`` (a path under ``workdir``) in Snakemake's ``.snakemake/<subject>`` the way
    its file persistence does (its own path encoding), as a finished (``metadata``) or started
    and unfinished (``incomplete``) job's output."""
    import types

    from snakemake.persistence.file import FilePersistence

    encoder = types.SimpleNamespace(_fetch_max_len=lambda _subject: 255)
    key = output.relative_to(workdir).as_posix()
    path = Path(FilePersistence._record_path(encoder, str(workdir / ".snakemake" / subject), key))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")


def _record_built(tree):
    """Every output in ``tree`` recorded as built by a finished job (Snakemake's metadata)."""
    outputs = [tree / RUN.format(seed=s) / name for s in (0, 1) for name in
               ("model.pt", "init.pt", "metrics.json", "train_log.csv", "trained.zarr", "init.zarr")]
    outputs += [tree / GROUP / "moments", tree / GROUP / "measures.csv", tree / "summary" / "runs.csv"]
    for out in outputs:
        _record(tree.parent, "metadata", out)


def test_outputs_no_job_recorded_are_not_built_yet_and_deleted_ones_are_damage(tree, capsys):
    import shutil

    _record_built(tree)
    # a sweep stopped (full disk) after training seed 2: its stores and its group never built
    run2 = tree / RUN.format(seed=2)
    for name in ("model.pt", "init.pt"):
        save_state(torch.nn.Linear(4, 3), run2 / name)
        _record(tree.parent, "metadata", run2 / name)
    (tree / "pairs/digits/mlp/w4/f0/s2/.moments.tmp-123").mkdir(parents=True)   # its moments pass, stopped
    result = check(tree)
    assert result.damage == [] and scrub(tree) == []
    not_built = {d.path for d in result.not_built}
    assert {run2 / "trained.zarr", run2 / "init.zarr", run2 / "metrics.json",
            tree / "pairs/digits/mlp/w4/f0/s2/measures.csv"} <= not_built
    assert main(["--results", str(tree)]) == 0
    out = capsys.readouterr().out
    assert "no damage found" in out and "of jobs not run yet" in out and "--forcerun" not in out
    # a store a finished job recorded, deleted: damage, named, with its rebuild command
    shutil.rmtree(tree / RUN.format(seed=0) / "init.zarr")
    result = check(tree)
    assert [d.path for d in result.damage] == [tree / RUN.format(seed=0) / "init.zarr"]
    assert main(["--results", str(tree)]) == 1
    out = capsys.readouterr().out
    assert "1 damaged or missing output(s)" in out and f"--forcerun results/{RUN.format(seed=0)}/init.zarr" in out


def test_outputs_of_an_interrupted_job_are_not_damage(tree, capsys):
    _record_built(tree)
    run1 = tree / RUN.format(seed=1)
    # seed 1's training was restarted and killed: Snakemake marked its outputs incomplete; the
    # checkpoint is torn, its metrics gone, the digest beside them left over
    for name in ("model.pt", "init.pt", "metrics.json", "train_log.csv"):
        _record(tree.parent, "incomplete", run1 / name)
    (run1 / "model.pt").write_bytes((run1 / "model.pt").read_bytes()[:50])
    (run1 / "metrics.json").unlink()
    result = check(tree)
    assert result.damage == []
    assert {run1 / "model.pt", run1 / "metrics.json"} <= {d.path for d in result.interrupted}
    assert main(["--results", str(tree)]) == 0
    out = capsys.readouterr().out
    assert "no damage found" in out and "interrupted (the next run redoes them)" in out
    # the same torn checkpoint with no job to redo it is damage
    __import__("shutil").rmtree(tree.parent / ".snakemake" / "incomplete")
    assert run1 / "model.pt" in {d.path for d in check(tree).damage}


def test_a_fresh_sweep_whose_first_jobs_have_not_finished_has_built_nothing(tree):
    """The first trainings of a fresh sweep have written their checkpoints, and Snakemake has
    recorded no finished job yet: the stores their runs still lack are not built yet, not damage."""
    import shutil

    run1 = tree / RUN.format(seed=1)
    shutil.rmtree(tree / "pairs")
    shutil.rmtree(tree / "summary", ignore_errors=True)
    for state in ("trained", "init"):
        shutil.rmtree(run1 / f"{state}.zarr")
        shutil.rmtree(tree / RUN.format(seed=0) / f"{state}.zarr")
    for name in ("model.pt", "init.pt", "metrics.json", "train_log.csv"):
        _record(tree.parent, "incomplete", run1 / name)   # seed 1's training is finishing
    result = check(tree)
    assert result.damage == [], result.damage
    assert run1 / "trained.zarr" in {d.path for d in result.not_built}
    # without any record at all (a copied tree) the same missing stores are damage
    shutil.rmtree(tree.parent / ".snakemake")
    assert run1 / "trained.zarr" in {d.path for d in check(tree).damage}


def test_a_held_lock_is_reported_as_a_sweep_in_progress(tree, capsys):
    _record_built(tree)
    locks = tree.parent / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.output.lock").write_text(str(tree / RUN.format(seed=1) / "model.pt"))
    _record(tree.parent, "incomplete", tree / RUN.format(seed=1) / "model.pt")
    (tree / RUN.format(seed=1) / "model.pt").unlink()   # Snakemake removes a rerun job's outputs first
    assert main(["--results", str(tree)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("check: sweep in progress") and "--unlock" in out and "of jobs running" in out
    assert "no damage found" in out


def test_no_results_directory_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "convergent.check", "--results", str(tmp_path / "results")],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.splitlines() == [f"check: no results directory at {tmp_path / 'results'}: "
                                        "nothing has been built yet (make run builds it)"]


def test_the_printed_command_runs_as_printed(tree, tmp_path, monkeypatch):
    (tree / RUN.format(seed=0) / "init.pt").write_bytes(b"")
    damage = scrub(tree)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for cwd, workdir in ((REPO, REPO), (elsewhere, tree.parent)):
        monkeypatch.chdir(cwd)
        cmd = rebuild_command(damage, ["my.yaml"], workdir=workdir)
        argv = __import__("shlex").split(cmd)
        n = len(snakemake_exe())
        # the program exists from where it is printed (a bare `snakemake` is not on PATH outside the venv)
        assert argv[0] != "snakemake" and Path(argv[0]).is_file()
        version = subprocess.run([*argv[:n], "--version"], capture_output=True, text=True, cwd=cwd)
        assert version.returncode == 0 and version.stdout.strip()[0].isdigit()
        if cwd == elsewhere:   # run from elsewhere: the Snakefile and the workdir are named
            assert ["--snakefile", str(REPO / "Snakefile")] == argv[argv.index("--snakefile"):][:2]
            assert ["--directory", str(tree.parent)] == argv[argv.index("--directory"):][:2]
            assert f"results/{RUN.format(seed=0)}/init.pt" in argv
        else:
            assert "--snakefile" not in argv and "--directory" not in argv


def test_check_during_a_running_sweep_and_after_it_is_killed(tmp_path, capsys):
    """The real thing: `make check` while a tiny sweep runs says so and finds nothing damaged;
    after the sweep is killed hard (its jobs with it, the lock left behind) nothing is damage."""
    import os
    import signal
    import time

    from tests.workflow import SNAKEMAKE, tiny_config, write_config

    write_config(tmp_path, tiny_config(archs=["mlp"], frozen_k=[0, 1], seeds=[0, 1, 2]))
    results = tmp_path / "results"
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(tmp_path / "config.yaml"), "--cores", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "PYTHONHASHSEED": "0"})
    try:
        deadline = time.monotonic() + 300
        # wait until some runs are trained and others still to come
        while len(list(results.glob("runs/*/*/*/*/*/metrics.json"))) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "the sweep ended before the check"
            time.sleep(0.2)
        during = check(results)
        code = main(["--results", str(results)])
        out = capsys.readouterr().out
        assert proc.poll() is None, "the sweep finished before the check ran"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)   # snakemake and its jobs, mid-write
        proc.wait()
    assert during.in_progress and during.damage == [] and (during.not_built or during.interrupted)
    assert code == 0 and out.startswith("check: sweep in progress") and "no damage found" in out
    # killed: the lock and the incomplete markers stay behind
    result = check(results)
    assert result.damage == [], result.damage
    assert main(["--results", str(results)]) == 0
    assert "no damage found" in capsys.readouterr().out
    subprocess.run([*cmd, "--unlock"], check=True, capture_output=True)
    result = check(results)
    assert not result.in_progress and result.damage == []
    assert main(["--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "sweep in progress" not in out and "no damage found" in out and "not built yet" in out


def test_snakemakes_marker_inside_a_store_raises_no_zarr_warning(tree):
    """Snakemake writes .snakemake_timestamp into every directory() output; zarr warns about it
    whenever a group's members are listed. Opening, reading and scrubbing a store must not."""
    import warnings

    store = tree / RUN.format(seed=0) / "trained.zarr"
    (store / ".snakemake_timestamp").write_text("")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = ActivationStore(store)
        assert s.layers == ["fc1"] and s.read_view("fc1", "flatten")[0].shape == (N, 4)
        assert scrub(tree) == []
    # a store without the layers attribute (not ours) is listed: still no warning, same layers
    meta = json.loads((store / "zarr.json").read_text())
    del meta["attributes"]["layers"]
    (store / "zarr.json").write_text(json.dumps(meta))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ActivationStore(store).layers == ["fc1"]
