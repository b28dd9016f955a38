"""One function per pipeline stage, taking plain paths and dicts.

The workflow's ``scripts/`` call these and nothing else, so each stage can be run
and tested without Snakemake. Every output is written atomically.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convergent.io import read_json, read_table, write_digest, write_json, write_table
from convergent.logs import get_logger, lap

if TYPE_CHECKING:   # pandas is imported where a job needs it: train and extract jobs never do
    import pandas as pd

#: training settings used when the config leaves them out
TRAINING_DEFAULTS: dict[str, Any] = {
    "epochs": 30, "batch_size": 64, "eval_batch_size": 1024, "optimizer": "sgd", "lr": 0.05,
    "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine",
}
EXTRACT_DEFAULTS: dict[str, Any] = {"split": "test", "chunk_rows": 256, "max_samples": None,
                                     "compression": "lz4", "chunk_features": 4096}


def _prepend_columns(frame: pd.DataFrame, columns: Mapping[str, Any]) -> None:
    """Insert constant ``columns`` (e.g. a pair's coordinates) at the front of ``frame``, in order."""
    for i, (key, value) in enumerate(columns.items()):
        frame.insert(i, key, value)


def _device(requested: str) -> str:
    """The config's ``device`` resolved by :func:`convergent.nets.train.resolve_device`, as a string."""
    from convergent.nets.train import resolve_device

    return str(resolve_device(requested))


def lr_hint(key: str, lr: float) -> str:
    """What to change when training diverges: the config key of the learning rate in use."""
    where = ("sweep.training.lr, or overrides[].training.lr for one (dataset, arch) cell"
             if key == "training.lr" else key)
    return f"{key} = {lr:g}: lower it (config key {where}), e.g. to {lr / 10:g}"


def train_job(*, run: Mapping[str, Any], settings: Mapping[str, Any], reference: str | None,
              data_dir: str, download: bool, device: str, threads: int,
              out_model: str, out_init: str, out_log_csv: str, out_metrics: str) -> dict[str, Any]:
    """Train one run and write its checkpoints, per-epoch log and final metrics.

    ``run`` holds dataset, arch, width, frozen_k, seed. A frozen run copies its first
    ``frozen_k`` layers from the ``reference`` state dict and keeps them frozen. A
    resume checkpoint next to ``out_model`` lets a restarted job continue where it stopped.
    ``settings["data"]`` (only for datasets with options, e.g. shapes32's size) goes to
    :func:`convergent.nets.data.load_dataset`, as in every other job that loads the data.
    ``settings["order_seed"]`` (a data-order run; default: the seed) seeds the minibatch
    order and every other random draw of training; the initial weights come from ``seed``.
    """
    from convergent.nets.data import load_dataset
    from convergent.nets.train import TrainConfig, init_model, load_state, save_state, set_determinism, train

    lap("imports")
    log = get_logger()
    seed, frozen_k = int(run["seed"]), int(run["frozen_k"])
    order_seed = int(settings.get("order_seed", seed))
    set_determinism(seed, threads)
    data = load_dataset(run["dataset"], data_dir=data_dir, download=download, options=settings.get("data"))
    lap("data")
    reference_state = load_state(reference) if frozen_k > 0 else None
    model = init_model(run["arch"], int(run["width"]), data, settings["model"], seed,
                       frozen_k=frozen_k, reference_state=reference_state)
    lap("model")
    save_state(model, out_init)
    lap("write")
    if order_seed != seed:
        # everything random after the initial weights (the global RNG of dropout or augmentation,
        # should a model use them) follows the order seed; an ordinary run's stream is untouched
        set_determinism(order_seed, threads)
    cfg = TrainConfig(**{**TRAINING_DEFAULTS, **settings["training"], "device": _device(device)})
    resume = Path(out_model).with_name("resume.pt")
    log.info("training %s for %d epochs (frozen_k=%d, resume=%s)", dict(run), cfg.epochs, frozen_k,
             resume.exists())
    try:
        metrics = train(model, data, cfg, seed=order_seed, frozen_k=frozen_k, log_path=Path(out_log_csv),
                        resume_path=resume, log=log.info)
    except FloatingPointError as err:
        raise FloatingPointError(f"{err}. Training diverged at {lr_hint('training.lr', cfg.lr)}") from None
    lap("compute")
    save_state(model, out_model)
    metrics = {**metrics, **dict(run), "order_seed": order_seed,
               "frozen_from": settings["frozen_from"] if frozen_k else None,
               "reference_seed": settings["reference_seed"] if frozen_k else None,
               "training": {**TRAINING_DEFAULTS, **settings["training"]}, "model": settings["model"],
               "num_classes": int(data.num_classes), "data": data.info}
    write_json(out_metrics, metrics)
    write_digest(out_metrics)
    resume.unlink(missing_ok=True)
    lap("write")
    log.info("done: test accuracy %.4f", metrics.get("test_acc", float("nan")))
    return metrics


def extract_job(*, run: Mapping[str, Any], checkpoints: Mapping[str, str], settings: Mapping[str, Any],
                data_dir: str, device: str, threads: int, out_stores: Mapping[str, str]) -> None:
    """Write the activations of each network state (``trained``, ``init``) on the evaluation split.

    ``checkpoints`` and ``out_stores`` map a state name to its state-dict file and its Zarr store.
    """
    import torch

    from convergent.nets.data import load_dataset
    from convergent.nets.extract import extract_to_store
    from convergent.nets.models import build_model
    from convergent.nets.train import load_state, set_determinism

    lap("imports")
    log = get_logger()
    set_determinism(int(run["seed"]), threads)
    ex = {**EXTRACT_DEFAULTS, **settings["extract"]}
    data = load_dataset(run["dataset"], data_dir=data_dir, options=settings.get("data"))
    lap("data")
    x, y = (data.x_test, data.y_test) if ex["split"] == "test" else (data.x_train, data.y_train)
    if ex["max_samples"]:
        x, y = x[: ex["max_samples"]], y[: ex["max_samples"]]
    model = build_model(run["arch"], int(run["width"]), data.input_shape, data.num_classes, settings["model"])
    model.to(_device(device))
    for state, checkpoint in checkpoints.items():
        model.load_state_dict(load_state(checkpoint))
        lap("model")
        attrs = {**{k: run[k] for k in ("dataset", "arch", "width", "frozen_k", "seed")},
                 "state": state, "split": ex["split"], "n_samples": int(len(y))}
        start = time.perf_counter()
        with torch.no_grad():
            extract_to_store(model, x, y, list(settings["layers"]), out_stores[state],
                             chunk_rows=int(ex["chunk_rows"]), attrs=attrs, compression=ex["compression"],
                             chunk_features=int(ex["chunk_features"]))
        lap("compute")   # the forward pass and the store's writes are one streaming loop
        log.info("%s: extracted %d samples × %d layers in %.1f s", state, len(y), len(settings["layers"]),
                 time.perf_counter() - start)


def moments_job(*, pairs: Mapping[str, Sequence[str]], layers: Sequence[str], params: Mapping[str, Any],
                out_dir: str, threads: int = 1) -> None:
    """One streaming pass per (pair, layer) over the pair's two stores: ``out_dir/{key}/{layer}.npz``,
    the sufficient statistics of every measure. ``pairs`` maps a pair key (``{control}/{label}``,
    :attr:`convergent.sweep.Pair.key`) to its stores ``[a, b]``; each store is opened once. The
    directory appears only once every pair and layer is done. ``threads``: the job's cores; with 2
    or more, each fold gets a thread (capped by ``params['threads']``)."""
    from convergent.activations import ActivationStore
    from convergent.io import atomic_directory
    from convergent.moments import DEFAULT_MOMENT_PARAMS, save_moments, streaming_moments

    log = get_logger()
    lap("imports")
    opened: dict[str, ActivationStore] = {}

    def store(path: str) -> ActivationStore:
        if path not in opened:
            opened[path] = ActivationStore(path)
        return opened[path]

    kw = {**params, "threads": min(int(threads), int(params.get("threads", DEFAULT_MOMENT_PARAMS["threads"])))}
    with atomic_directory(out_dir) as tmp:
        for key, (store_a, store_b) in pairs.items():
            a, b = store(store_a), store(store_b)
            lap("model")
            (tmp / key).mkdir(parents=True)
            for layer in layers:
                start = time.perf_counter()
                moments = streaming_moments(a, b, layer, **kw)
                lap("compute")
                save_moments(tmp / key / f"{layer}.npz", moments)
                lap("write")
                log.info("moments of %s %s in %.2f s", key, layer, time.perf_counter() - start)
    lap("write")


def _load_moments_checked(path: Path, moments_dir: str) -> Any:
    """:func:`convergent.moments.load_moments`; a torn or corrupt file (the zip's CRC-32 fails)
    raises :class:`~convergent.io.DamagedOutputError` naming it and the directory to rebuild."""
    import zipfile

    from convergent.io import DamagedOutputError, rebuild_hint
    from convergent.moments import load_moments

    try:
        return load_moments(path)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise DamagedOutputError(f"moments file {path} is damaged ({type(err).__name__}: {err}). "
                                 f"{rebuild_hint(moments_dir)}") from err


def measures_job(*, moments_dir: str, pairs: Mapping[str, Mapping[str, Any]], layers: Sequence[str],
                 params: Mapping[str, Any], layer_index: Mapping[str, int], out_csv: str) -> pd.DataFrame:
    """Every enabled measure of every pair and layer from the moments files alone, as tidy rows.

    ``pairs`` maps a pair key (``{control}/{label}``, the pair's folder in ``moments_dir``) to its
    columns (dataset … order_seed_b); each layer's rows also get ``layer`` and ``layer_index``
    (1-based depth in the architecture, from ``layer_index``).
    """
    import pandas as pd

    from convergent.measures import compute_measures

    log = get_logger()
    lap("imports")
    tables = []
    for key, coordinates in pairs.items():
        for layer in layers:
            start = time.perf_counter()
            moments = _load_moments_checked(Path(moments_dir) / key / f"{layer}.npz", moments_dir)
            lap("data")
            table = compute_measures(moments, dict(params))
            _prepend_columns(table, {**coordinates, "layer": layer, "layer_index": layer_index[layer]})
            tables.append(table)
            lap("compute")
            log.info("measures of %s %s: %d rows in %.2f s", key, layer, len(table), time.perf_counter() - start)
    out = pd.concat(tables, ignore_index=True)
    write_table(out_csv, out)
    lap("write")
    return out


#: a run whose test accuracy is ≤ 1/num_classes + this is flagged ``at_chance`` (config ``chance_margin``)
CHANCE_MARGIN = 0.05


def at_chance(test_acc: float, num_classes: int, margin: float = CHANCE_MARGIN) -> bool:
    """Whether ``test_acc`` (fraction) is within ``margin`` of chance, 1/num_classes (or not finite)."""
    import math

    return not math.isfinite(test_acc) or test_acc <= 1.0 / num_classes + margin


def runs_table(metric_paths: Sequence[str | os.PathLike], chance_margin: float = CHANCE_MARGIN) -> pd.DataFrame:
    """One row per run: sweep coordinates, accuracy and training statistics.

    ``at_chance``: the test accuracy is ≤ 1/num_classes + ``chance_margin`` (the network did not
    learn; its pairs are left out of the findings and marked in the figures); ``chance_acc`` is
    1/num_classes.
    """
    import pandas as pd

    rows = []
    for path in metric_paths:
        m = read_json(path)
        row = {k: v for k, v in m.items() if not isinstance(v, (dict, list))}
        classes = int(m.get("num_classes") or 0)
        if classes and "test_acc" in m:
            row["chance_acc"] = 1.0 / classes
            row["at_chance"] = at_chance(float(m["test_acc"]), classes, chance_margin)
        rows.append(row)
    frame = pd.DataFrame(rows)
    # order_seed: the seed of the minibatch order (data-order control); an ordinary run's
    # (and a metrics file written before the column existed) is its seed
    frame["order_seed"] = frame["order_seed"].fillna(frame["seed"]) if "order_seed" in frame else frame["seed"]
    frame["order_seed"] = frame["order_seed"].astype(int)
    keys = ["dataset", "arch", "width", "frozen_k", "seed", "order_seed"]
    return frame[keys + [c for c in frame.columns if c not in keys]].sort_values(keys, ignore_index=True)


def complete_pair_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """A pair table (columns ``seed_a``, ``seed_b``) with every pair coordinate present:
    ``control`` (``cross`` where absent: only cross-seed pairs are written without it) and
    ``order_seed_a``, ``order_seed_b`` (the seed where absent: an ordinary run's minibatch
    order is its seed), placed right after ``seed_b``. A run table (column ``seed``: rotation)
    gets ``order_seed`` = ``seed`` right after it. Other tables are returned unchanged."""
    if "seed" in frame and "order_seed" not in frame and "seed_a" not in frame:
        frame = frame.copy()
        frame.insert(list(frame.columns).index("seed") + 1, "order_seed", frame["seed"])
        return frame
    if not {"seed_a", "seed_b"} <= set(frame.columns):
        return frame
    frame = frame.copy()
    at = list(frame.columns).index("seed_b") + 1
    if "control" not in frame:
        frame.insert(at, "control", "cross")
        at += 1
    for side in "ab":
        if f"order_seed_{side}" not in frame:
            frame.insert(at, f"order_seed_{side}", frame[f"seed_{side}"])
        at = list(frame.columns).index(f"order_seed_{side}") + 1
    return frame


def concat_tables(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Concatenate tidy CSV tables with identical columns, refusing any that differ. Pair
    tables are first completed by :func:`complete_pair_columns` (order seeds, control)."""
    import pandas as pd

    # read_table: a table whose digest was recorded must still match it
    frames = [complete_pair_columns(read_table(p)) for p in paths]
    if not frames:
        raise ValueError("no tables to concatenate")
    columns = list(frames[0].columns)
    for path, frame in zip(paths, frames):
        if list(frame.columns) != columns:
            raise ValueError(f"{path} has columns {list(frame.columns)}, expected {columns}")
    return pd.concat(frames, ignore_index=True)


LMC_DEFAULTS: dict[str, Any] = {"enabled": True, "alphas": 11,
                                "variants": ["naive", "bn_reset", "permuted_activation", "permuted_weight",
                                             "permuted_activation_bn_reset", "permuted_weight_bn_reset",
                                             "repair", "permuted_activation_repair", "permuted_weight_repair"],
                                # how θ(α) is evaluated (convergent.weights.lmc.EvalOptions; README "LMC cost"):
                                # null sample counts / coarse_alphas give the full computation
                                "eval_batch_size": "auto", "calib_batch_size": 1024, "train_samples": 500,
                                "test_samples": None, "calib_samples": 500, "coarse_alphas": 7, "subset_seed": 0}
ROTATION_DEFAULTS: dict[str, Any] = {"enabled": True, "layers": "all", "strengths": [0.0, 0.25, 0.5, 1.0],
                                     "retrain_epochs": 5, "lr": 0.01,
                                     # only speed: eval batch (auto, see convergent.weights.evaluation) and the
                                     # memory the frozen prefix's outputs may take (convergent.weights.rotation.prefix)
                                     "eval_batch_size": "auto", "cache_mb": 2048}


def lmc_job(*, pairs: Mapping[str, Mapping[str, Any]], settings: Mapping[str, Any], params: Mapping[str, Any],
            data_dir: str, device: str, threads: int, out_curve: str, out_barriers: str) -> None:
    """Linear mode connectivity of a group of pairs of one cell, each with its variants.

    ``pairs`` maps a pair key to ``{"checkpoints": [a, b], "variants": [...], "coordinates":
    {...}}`` (the columns its rows get: dataset … order_seed_b, see rules/common.smk). The data
    are loaded and the network built once; each pair starts from the same random state as a
    job of its own would (seeded by its ``seed_a``), so grouping changes no number.

    Every architecture supports every variant: the permuted ones use
    :func:`convergent.weights.permute.permutation_spec` (one permutation per residual
    stream in resnet18/wrn); ``*bn_reset`` variants of nets without BatchNorm come out
    as rows with ``applicable = False``.
    """
    import pandas as pd

    from convergent.nets.data import load_dataset
    from convergent.nets.models import build_model
    from convergent.nets.train import load_state, set_determinism
    from convergent.weights.lmc import EvalOptions, default_alphas, lmc_pair

    log = get_logger()
    lap("imports")
    p = {**LMC_DEFAULTS, **params}
    first = next(iter(pairs.values()))["coordinates"]
    data = load_dataset(first["dataset"], data_dir=data_dir, options=settings.get("data"))
    lap("data")
    options = EvalOptions.from_params(p)
    curves, barriers = [], []
    memo: dict = {}   # endpoint evaluations, shared by the group's pairs (keyed by checkpoint path)
    for key, pair in pairs.items():
        coords = pair["coordinates"]
        # what a job of this pair alone did before loading anything: same seed, same thread count
        set_determinism(int(coords["seed_a"]), threads)
        model = build_model(coords["arch"], int(coords["width"]), data.input_shape, data.num_classes,
                            settings["model"])
        model.to(_device(device))
        state_a, state_b = (load_state(c) for c in pair["checkpoints"])
        lap("model")
        curve, bars, timings = lmc_pair(model, state_a, state_b, data, default_alphas(int(p["alphas"])),
                                        list(pair["variants"]), seed=int(coords["seed_a"]), options=options,
                                        names=tuple(str(c) for c in pair["checkpoints"]), memo=memo)
        lap("compute")
        log.info("lmc %s timings (s): %s", key, {k: round(v, 3) for k, v in timings.items()})
        for frame in (curve, bars):
            _prepend_columns(frame, coords)
        curves.append(curve)
        barriers.append(bars)
    write_table(out_curve, pd.concat(curves, ignore_index=True))
    write_table(out_barriers, pd.concat(barriers, ignore_index=True))
    lap("write")


def rotation_job(*, run: Mapping[str, Any], settings: Mapping[str, Any], checkpoint: str,
                 params: Mapping[str, Any], data_dir: str, device: str, threads: int, out_csv: str) -> pd.DataFrame:
    """Brown et al.'s privileged-basis test on one trained network, with its linear control.

    For every configured layer and rotation strength t (R = expm(t·A), A random
    skew-symmetric; t = 0 is the identity control), rotate the layer's pre-activation at
    its rotation site (:func:`convergent.weights.rotation.rotation_site`), retrain
    everything above R, and record accuracy. The linear control (option ``linear``: ReLU →
    identity, max-pool → average pool) trains the same architecture from the same seed
    with the sweep's training settings and applies the same test. ``rotation.layers``
    resolves through :func:`convergent.nets.archspec.rotation_layers`; with ``all``, layers
    without a site (wrn's stem) are named in the log with the reason.
    """
    import pandas as pd

    from convergent.nets.archspec import rotation_layers, rotation_refusals
    from convergent.nets.data import load_dataset
    from convergent.nets.train import TrainConfig, init_model, load_state, set_determinism
    from convergent.weights.evaluation import resolve_batch_size
    from convergent.weights.rotation import layer_width, prefix, retrain, rotation_path, rotation_test

    lap("imports")
    log = get_logger()
    p = {**ROTATION_DEFAULTS, **params}
    seed = int(run["seed"])
    set_determinism(seed, threads)
    data = load_dataset(run["dataset"], data_dir=data_dir, options=settings.get("data"))
    lap("data")
    training = {**TRAINING_DEFAULTS, **settings["training"], "device": device}
    relu = init_model(run["arch"], int(run["width"]), data, settings["model"], seed)
    relu.load_state_dict(load_state(checkpoint))
    linear = init_model(run["arch"], int(run["width"]), data, {**settings["model"], "linear": True}, seed)
    on = _device(device)
    for net in (relu, linear):   # every tensor of the job follows the networks' device
        net.to(on)
    batch = resolve_batch_size(p["eval_batch_size"], relu, tuple(relu.input_shape))
    limit = None if p["cache_mb"] is None else int(p["cache_mb"]) << 20
    lap("model")
    failed = None
    try:
        # the control trains as the sweep's train job does (same optimiser, schedule and batch
        # order); only the test passes that job logs per epoch are left out: nothing reads them here
        cfg = TrainConfig.from_dict(training)
        loss, acc = retrain(linear, linear, data.x_train, data.y_train, cfg, seed, frozen_k=0)
        log.info("linear control: %d epochs, last epoch train %.4f/%.3f", cfg.epochs, loss, acc)
    except FloatingPointError as err:   # the control failed: report it, keep the ReLU rows
        failed = (f"linear control failed to train: {err}; it trains with the sweep's "
                  f"{lr_hint('training.lr', float(training['lr']))}")
        log.warning("%s", failed)
    layers = rotation_layers(relu.arch, relu.options, p["layers"])
    for name, reason in rotation_refusals(relu.arch, relu.options).items():
        log.info("rotation: %s layer %s has no rotation site and gets no rows: %s", relu.arch, name, reason)
    rows = []
    for model in (relu,) if failed else (relu, linear):
        # the original network's test metrics, once per network (not once per layer and strength)
        original = evaluate_test(model, data, batch)
        for layer in layers:
            d = layer_width(model, layer)
            cache = prefix(model, data, layer, batch, limit)   # shared by every strength
            for t in p["strengths"]:
                R = rotation_path(d, float(t), seed)
                try:
                    row = rotation_test(model, data, layer, R, int(p["retrain_epochs"]), float(p["lr"]), seed,
                                        cfg=training, original=original, cache=cache, eval_batch_size=batch)
                except FloatingPointError as err:
                    raise FloatingPointError(f"{err}. Retraining a rotated network diverged at "
                                             f"{lr_hint('rotation.lr', float(p['lr']))}") from None
                rows.append({**{k: run[k] for k in ("dataset", "arch", "width", "frozen_k", "seed")},
                             "strength": float(t), "rotation": "expm(t*A), A random skew-symmetric",
                             **{k: v for k, v in row.items() if k not in ("arch", "width", "seed")},
                             "units": d})
                log.info("%s %s t=%.2f: %.3f -> %.3f -> %.3f", "linear" if row["linear"] else "relu", layer, t,
                         row["original_test_acc"], row["rotated_test_acc"], row["retrained_test_acc"])
            del cache
    if failed:
        rows += failed_control_rows(rows, failed)
    table = pd.DataFrame(rows)
    table["status"] = ["failed" if r.get("status") == "failed" else "ok" for r in rows]
    table["note"] = [r.get("note", "") for r in rows]
    lap("compute")
    write_table(out_csv, table)
    lap("write")
    return table


def evaluate_test(model: Any, data: Any, batch_size: int) -> tuple[float, float]:
    """(test loss, test accuracy) of ``model`` in eval mode."""
    from convergent.nets.train import evaluate

    return evaluate(model, data.x_test, data.y_test, batch_size)


def failed_control_rows(relu_rows: Sequence[Mapping[str, Any]], reason: str) -> list[dict[str, Any]]:
    """Rows of a linear control that failed to train: one per ReLU row (same layer, strength),
    ``linear`` True, every accuracy and loss NaN, ``status`` "failed" and the reason in ``note``."""
    out = []
    for r in relu_rows:
        row = {k: (float("nan") if k.endswith(("_acc", "_loss")) else v) for k, v in r.items()}
        out.append({**row, "linear": True, "status": "failed", "note": reason})
    return out


CKA_LAYERS_DEFAULTS: dict[str, Any] = {"view": "flatten", "max_samples": 2000, "max_features": 4096,
                                       "kernel_samples": 500, "rbf_sigma_scales": [0.2, 0.4, 0.8],
                                       "svcca_variance_kept": 0.99, "match_max_features": 1024}


def _centred_view(store: Any, layer: str, view: str, n: int):
    """The first ``n`` images of ``layer`` in ``view``, float64, columns centred."""
    import numpy as np

    x = np.asarray(store.read_view(layer, view)[0][:n], dtype=np.float64)
    return x - x.mean(axis=0)


def cross_layer_cka(store_a: Any, store_b: Any, layers: Sequence[str], *, view: str = "flatten",
                    max_samples: int | None = 2000, max_features: int = 4096,
                    layer_index: Mapping[str, int] | None = None, kernel_samples: int = 500,
                    rbf_sigma_scales: Sequence[float] = (0.2, 0.4, 0.8), svcca_variance_kept: float = 0.99,
                    match_max_features: int = 1024) -> pd.DataFrame:
    """Every measure of every layer of network A with every layer of network B (Kornblith et al.
    Fig. 2 and Table 2): linear CKA, RBF CKA, matched correlation and the classic measures
    (:mod:`convergent.measures.crosslayer` lists the columns).

    Rows: one per (layer_a, layer_b). Both stores must hold the same images in the same order
    (the extract stage guarantees it). Only the first ``max_samples`` images are used (None: all);
    layers wider than ``max_features`` go through the n×n Gram matrices (the dual form: CCA and
    matching are then unavailable, with the reason in ``note``); narrower layers through the
    d×d moments. Both forms are exact. RBF CKA uses the first ``kernel_samples`` images.
    ``layer_index``: each layer's 1-based depth in the architecture, as in the measures table
    (default: its position in ``layers``).
    """
    import pandas as pd

    from convergent.measures.crosslayer import cross_layer_measures

    n_a, n_b = store_a.n_images, store_b.n_images
    if n_a != n_b:
        raise ValueError(f"stores hold {n_a} and {n_b} images; cross-layer CKA needs the same samples")
    n = n_a if not max_samples else min(n_a, int(max_samples))
    xs_a = {layer: _centred_view(store_a, layer, view, n) for layer in layers}
    xs_b = {layer: _centred_view(store_b, layer, view, n) for layer in layers}
    depth = dict(layer_index) if layer_index else {layer: i for i, layer in enumerate(layers, start=1)}
    values = cross_layer_measures(xs_a, xs_b, {"max_features": max_features, "kernel_samples": kernel_samples,
                                               "rbf_sigma_scales": list(rbf_sigma_scales),
                                               "svcca_variance_kept": svcca_variance_kept,
                                               "match_max_features": match_max_features})
    rows = [{"layer_a": v["layer_a"], "layer_index_a": depth[v["layer_a"]], "layer_b": v["layer_b"],
             "layer_index_b": depth[v["layer_b"]], "view": view, "n_samples": n,
             "kernel_samples": min(n, int(kernel_samples)),
             **{k: x for k, x in v.items() if k not in ("layer_a", "layer_b")}} for v in values]
    return pd.DataFrame(rows)


def cka_layers_job(*, store_a: str, store_b: str, layers: Sequence[str], coordinates: Mapping[str, Any],
                   params: Mapping[str, Any], out_csv: str,
                   layer_index: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Cross-layer linear CKA of one cross-seed pair as a tidy table with the pair's coordinates."""
    from convergent.activations import ActivationStore

    lap("imports")
    log = get_logger()
    p = {**CKA_LAYERS_DEFAULTS, **params}
    start = time.perf_counter()
    stores = ActivationStore(store_a), ActivationStore(store_b)
    lap("model")
    table = cross_layer_cka(*stores, list(layers), view=p["view"],
                            max_samples=p["max_samples"], max_features=int(p["max_features"]),
                            layer_index=layer_index, kernel_samples=int(p["kernel_samples"]),
                            rbf_sigma_scales=[float(t) for t in p["rbf_sigma_scales"]],
                            svcca_variance_kept=float(p["svcca_variance_kept"]),
                            match_max_features=int(p["match_max_features"]))
    _prepend_columns(table, coordinates)
    lap("compute")
    write_table(out_csv, table)
    lap("write")
    log.info("cross-layer measures of %d × %d layers on %d samples in %.2f s", len(layers), len(layers),
             int(table["n_samples"].iloc[0]) if len(table) else 0, time.perf_counter() - start)
    return table
