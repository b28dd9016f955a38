"""Layer activations of a trained network, batch by batch, into an activation store.

Representations are captured with forward hooks on the layer modules of
:class:`~convergent.nets.models.ConvergentNet` (see :func:`convergent.nets.models.record_layers`),
in eval mode and without gradients. The forward pass stops after the deepest
requested layer, so extracting early layers does not pay for the rest of the network.

Shapes: rows are samples, in input order; dense layers give (b, d), conv layers keep
their spatial axes, (b, c, l) or (b, c, h, w). A *tokens* layer of an imported network
(output (b, t, d), :class:`~convergent.nets.models.ImportedNet`) is stored transposed, (b, d, t),
with axes ``sample, unit, token``: the units take the channels' place, so the conv views
apply unchanged (``positions`` is the tokens view, every token of every sample a row;
``pool`` the mean over tokens; ``flatten`` all t·d values). Values are float32.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convergent.activations import CHUNK_FEATURES, TARGETS, TOKEN_ATTRS, ActivationStoreWriter
from convergent.logs import progress
from convergent.nets.models import ConvergentNet, ImportedNet, record_layers


def iter_layer_activations(model: ConvergentNet | ImportedNet, x: torch.Tensor, layers: Sequence[str],
                           batch_size: int = 256) -> Iterator[dict[str, np.ndarray]]:
    """Yield ``{layer: float32 array (b, ...)}`` for consecutive batches of ``x``.

    ``x`` is (n, *input_shape) on any device; batches are moved to the model's device.
    The model is put in eval mode and left there.
    """
    layers = list(layers)
    if not layers:
        raise ValueError("no layers requested")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    upto = 1 + max(model.layer_index(name) for name in layers)  # validates the names too
    tokens = token_layers(model, layers)
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad(), record_layers(model, layers) as out:
        for start in range(0, len(x), batch_size):
            out.clear()
            model.forward_layers(x[start:start + batch_size].to(device), upto)
            yield {name: _stored(out[name], name in tokens).float().cpu().numpy() for name in layers}


def token_layers(model: ConvergentNet | ImportedNet, layers: Sequence[str]) -> set[str]:
    """The ``layers`` of ``model`` whose output is (b, tokens, d) (only an imported network has any)."""
    kinds = getattr(model, "layer_kinds", {})
    return {name for name in layers if kinds.get(name) == "tokens"}


def _stored(output: torch.Tensor, tokens: bool) -> torch.Tensor:
    """A layer's output as the store keeps it: a tokens layer (b, t, d) as (b, d, t)."""
    return output.transpose(1, 2) if tokens else output


def layer_row_shapes(model: ConvergentNet | ImportedNet, layers: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Per-sample shape of each layer's representation, from one dummy forward pass."""
    probe = torch.zeros((2, *model.input_shape))  # 2 rows: any BatchNorm in eval mode is fine anyway
    was_training = model.training
    try:
        first = next(iter_layer_activations(model, probe, layers, batch_size=2))
    finally:
        model.train(was_training)
    return {name: tuple(int(s) for s in a.shape[1:]) for name, a in first.items()}


def extract_to_store(model: ConvergentNet | ImportedNet, x: torch.Tensor, y: torch.Tensor | np.ndarray,
                     layers: Sequence[str], path: str | os.PathLike, chunk_rows: int = 1024,
                     attrs: Mapping[str, Any] | None = None, batch_size: int | None = None,
                     compression: str = "lz4", chunk_features: int | None = None) -> Path:
    """Write the activations of ``layers`` on ``x`` (and the labels ``y``) to a Zarr store.

    The store is built in a temporary sibling directory by
    :class:`~convergent.activations.ActivationStoreWriter` and renamed to ``path`` only
    when complete; any exception (or a killed process) leaves nothing at ``path``.
    ``batch_size`` defaults to ``chunk_rows``; ``compression`` is one of
    :data:`~convergent.activations.COMPRESSION`; ``chunk_features`` (default
    :data:`~convergent.activations.CHUNK_FEATURES`): layers wider than this are written in
    2-D chunks (row block × feature block). Returns ``path``.
    """
    n = int(len(x))
    if len(y) != n:
        raise ValueError(f"{n} inputs but {len(y)} targets")
    layers = list(layers)
    shapes = layer_row_shapes(model, layers)
    targets = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y, dtype=np.int64)
    meta = {"arch": model.arch, "width": model.width, "layer_names": model.layer_names,
            "n_samples": n, **dict(attrs or {})}
    with ActivationStoreWriter(path, n_samples=n, chunk_rows=chunk_rows, attrs=meta, compression=compression,
                               chunk_features=chunk_features or CHUNK_FEATURES) as writer:
        tokens = token_layers(model, layers)
        for name in layers:
            writer.create(name, shapes[name], attrs=TOKEN_ATTRS if name in tokens else None)
        writer.create(TARGETS, (), dtype="int64")
        writer.append(TARGETS, targets)
        step = batch_size or chunk_rows
        tick = progress(-(-n // step), f"extract {Path(path).name}: batch")   # per-chunk progress in the job's log
        for i, batch in enumerate(iter_layer_activations(model, x, layers, step)):
            for name in layers:
                writer.append(name, batch[name])
            tick(i + 1)
        return writer.commit()
