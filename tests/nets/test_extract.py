"""Extraction: values equal a direct forward pass, views, and interrupt safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from convergent.activations import ActivationStore, IncompleteStoreError
from convergent.nets.extract import extract_to_store, iter_layer_activations, layer_row_shapes
from convergent.nets.models import build_model


def _model(arch: str, shape, opts=None, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(arch, 4, shape, 10, opts)
    # give BatchNorm non-trivial running statistics so eval mode matters
    model.train()
    with torch.no_grad():
        model(torch.randn(32, *shape))
    return model


@pytest.mark.parametrize("arch,shape,opts", [
    ("cnn", (1, 8, 8), {"depth": 3}),
    ("cnn", (1, 40), {"depth": 3}),
    ("mlp", (1, 8, 8), {"depth": 2}),
])
def test_round_trip_equals_forward_pass(tmp_path, arch, shape, opts):
    model = _model(arch, shape, opts)
    x = torch.randn(50, *shape)
    y = torch.randint(0, 10, (50,))
    path = tmp_path / "acts.zarr"
    out = extract_to_store(model, x, y, model.layer_names, path, chunk_rows=16,
                           attrs={"dataset": "test", "seed": 0})
    assert out == path and path.is_dir()
    assert not list(tmp_path.glob(".acts.zarr.tmp-*"))
    assert not model.training  # extraction runs in eval mode

    store = ActivationStore(path)
    assert store.layers == model.layer_names
    assert store.attrs["dataset"] == "test" and store.attrs["arch"] == arch
    np.testing.assert_array_equal(store.targets(), y.numpy())
    _, direct = model.eval().named_layer_outputs(x)
    for name in model.layer_names:
        raw = np.asarray(store.raw(name)[:])
        assert raw.dtype == np.float32 and raw.shape == tuple(direct[name].shape)
        np.testing.assert_allclose(raw, direct[name].numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
def test_every_compression_is_lossless(tmp_path, compression):
    model = _model("cnn", (1, 8, 8), {"depth": 2})
    x, y = torch.randn(40, 1, 8, 8), torch.randint(0, 10, (40,))
    path = extract_to_store(model, x, y, model.layer_names, tmp_path / "acts.zarr", chunk_rows=16,
                            compression=compression)
    store = ActivationStore(path)
    assert store.attrs["compression"] == compression
    _, direct = model.eval().named_layer_outputs(x)
    for name in model.layer_names:
        np.testing.assert_array_equal(np.asarray(store.raw(name)[:]), direct[name].numpy())


def test_unknown_compression_is_rejected_before_writing(tmp_path):
    model = _model("mlp", (1, 8, 8), {"depth": 2})
    with pytest.raises(ValueError, match="lz4, zstd, none"):
        extract_to_store(model, torch.randn(8, 1, 8, 8), torch.zeros(8, dtype=torch.long), model.layer_names,
                         tmp_path / "acts.zarr", compression="gzip")
    assert list(tmp_path.iterdir()) == []


def test_views_shapes(tmp_path):
    model = _model("cnn", (1, 8, 8), {"depth": 3})
    n = 20
    path = extract_to_store(model, torch.randn(n, 1, 8, 8), torch.zeros(n, dtype=torch.int64),
                            ["conv1", "conv3"], tmp_path / "a.zarr", chunk_rows=8)
    store = ActivationStore(path)
    assert store.layers == ["conv1", "conv3"]
    assert store.raw("conv3").shape == (n, 8, 4, 4)
    assert store.view_shape("conv3", "positions") == (n * 16, 8)
    assert store.view_shape("conv3", "flatten") == (n, 8 * 16)
    assert store.view_shape("conv3", "pool") == (n, 8)
    rows, targets = store.read_view("conv1", "positions")
    assert rows.shape == (n * 64, 4) and targets.shape == (n * 64,)


def test_iter_layer_activations_batches():
    model = _model("cnn", (1, 40), {"depth": 3})
    x = torch.randn(10, 1, 40)
    batches = list(iter_layer_activations(model, x, ["conv1", "conv3"], batch_size=4))
    assert [b["conv1"].shape[0] for b in batches] == [4, 4, 2]
    assert batches[0]["conv1"].shape == (4, 4, 40) and batches[0]["conv3"].shape == (4, 8, 20)
    assert all(a.dtype == np.float32 for b in batches for a in b.values())
    assert layer_row_shapes(model, ["conv3"]) == {"conv3": (8, 20)}
    with pytest.raises(KeyError):
        next(iter_layer_activations(model, x, ["fc1"]))


def test_exception_mid_extraction_leaves_nothing(tmp_path):
    model = _model("mlp", (1, 8, 8))
    calls = []

    def boom(_m, _i, _o):
        calls.append(1)
        if len(calls) > 3:  # after a few chunks are on disk
            raise RuntimeError("boom")

    model.layer_module("fc1").register_forward_hook(boom)
    path = tmp_path / "acts.zarr"
    with pytest.raises(RuntimeError, match="boom"):
        extract_to_store(model, torch.randn(64, 1, 8, 8), torch.zeros(64, dtype=torch.int64),
                         ["fc1", "fc2"], path, chunk_rows=8)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import torch
    from convergent.nets.extract import extract_to_store
    from convergent.nets.models import build_model

    out, marker = Path(sys.argv[1]), Path(sys.argv[2])
    torch.manual_seed(0)
    model = build_model("cnn", 4, (1, 8, 8), 10, {"depth": 2})
    calls = []

    def stall(_m, _i, _o):
        calls.append(1)
        if len(calls) == 4:  # probe pass + 2 batches (2 chunks) written, then hang
            marker.write_text("stalled")
            time.sleep(120)

    model.layer_module("conv2").register_forward_hook(stall)
    extract_to_store(model, torch.randn(40, 1, 8, 8), torch.zeros(40, dtype=torch.int64),
                     ["conv1", "conv2"], out, chunk_rows=8)
""")


def test_killed_process_leaves_no_store(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER)
    out, marker = tmp_path / "run" / "acts.zarr", tmp_path / "stalled"
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(marker)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "writer never reached the stall"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not out.exists()
    with pytest.raises(FileNotFoundError):
        ActivationStore(out)
    leftovers = list(out.parent.glob(".acts.zarr.tmp-*"))
    assert len(leftovers) == 1  # the half-written temporary store
    assert any(p.is_file() for p in (leftovers[0] / "conv1").rglob("*"))  # some chunks did land
    with pytest.raises(IncompleteStoreError):
        ActivationStore(leftovers[0])


def test_store_opens_in_xarray_with_2d_chunks_for_wide_layers(tmp_path):
    """Every array carries zarr v3 dimension_names, so xarray reads the store as a Dataset;
    a layer wider than chunk_features is chunked along features too (the dual moments form)."""
    xr = pytest.importorskip("xarray")
    from convergent.activations import ActivationStore, ActivationStoreWriter

    rng = np.random.default_rng(0)
    n = 12
    conv, fc = rng.standard_normal((n, 6, 3, 3)).astype(np.float32), rng.standard_normal((n, 5)).astype(np.float32)
    with ActivationStoreWriter(tmp_path / "s.zarr", n, chunk_rows=4, chunk_features=20) as w:
        w.create("conv", conv.shape[1:])
        w.create("fc", fc.shape[1:])
        w.create("targets", (), dtype="int64")
        w.append("conv", conv)
        w.append("fc", fc)
        w.append("targets", np.arange(n) % 3)
    store = ActivationStore(tmp_path / "s.zarr")
    assert store.raw("conv").chunks == (4, 2, 3, 3) and store.raw("fc").chunks == (4, 5)
    ds = xr.open_zarr(tmp_path / "s.zarr", consolidated=False, chunks=None)
    assert ds["conv"].dims == ("sample", "conv_channel", "conv_height", "conv_width")
    assert ds["fc"].dims == ("sample", "fc_unit") and ds["targets"].dims == ("sample",)
    assert ds.sizes["sample"] == n
    np.testing.assert_array_equal(ds["conv"].values, conv)
    np.testing.assert_array_equal(ds["targets"].values, np.arange(n) % 3)
