"""Rule ``extract`` (rules/extract.smk): the activations of a run's network states."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from convergent.jobs._common import _device
from convergent.logs import get_logger, lap
from convergent.settings import ExtractSettings
from convergent.sweep import Run


def extract_job(*, run: Run | Mapping[str, Any], checkpoints: Mapping[str, str], settings: Mapping[str, Any],
                data_dir: str, device: str, threads: int, out_stores: Mapping[str, str]) -> None:
    """Write the activations of each network state (``trained``, ``init``) on the evaluation split.

    ``checkpoints`` and ``out_stores`` map a state name to its state-dict file and its Zarr store;
    ``settings["extract"]``: :class:`~convergent.settings.ExtractSettings` (or a mapping of its keys).
    """
    import torch

    from convergent.nets.data import load_dataset
    from convergent.nets.extract import extract_to_store
    from convergent.nets.models import build_model
    from convergent.nets.train import load_state, set_determinism

    lap("imports")
    log = get_logger()
    run = Run.coerce(run)
    set_determinism(run.seed, threads)
    ex = ExtractSettings.coerce(settings["extract"])
    data = load_dataset(run.dataset, data_dir=data_dir, options=settings.get("data"))
    lap("data")
    x, y = (data.x_test, data.y_test) if ex.split == "test" else (data.x_train, data.y_train)
    if ex.max_samples:
        x, y = x[: ex.max_samples], y[: ex.max_samples]
    model = build_model(run.arch, run.width, data.input_shape, data.num_classes, settings["model"])
    model.to(_device(device))
    for state, checkpoint in checkpoints.items():
        model.load_state_dict(load_state(checkpoint))
        lap("model")
        attrs = {**run.coordinates(), "state": state, "split": ex.split, "n_samples": int(len(y))}
        start = time.perf_counter()
        with torch.no_grad():
            extract_to_store(model, x, y, list(settings["layers"]), out_stores[state],
                             chunk_rows=int(ex.chunk_rows), attrs=attrs, compression=ex.compression,
                             chunk_features=int(ex.chunk_features))
        lap("compute")   # the forward pass and the store's writes are one streaming loop
        log.info("%s: extracted %d samples × %d layers in %.1f s", state, len(y), len(settings["layers"]),
                 time.perf_counter() - start)
