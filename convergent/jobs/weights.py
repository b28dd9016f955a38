"""Rules ``lmc`` and ``rotation`` (rules/weights.smk): the weight-space experiments on checkpoints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from convergent.io import write_table
from convergent.jobs._common import _device, _prepend_columns, lr_hint
from convergent.logs import get_logger, lap
from convergent.settings import LMCSettings, RotationSettings, TrainingSettings
from convergent.sweep import Run

if TYPE_CHECKING:   # pandas is imported where a job needs it: train and extract jobs never do
    import pandas as pd


def lmc_job(*, pairs: Mapping[str, Mapping[str, Any]], settings: Mapping[str, Any],
            params: LMCSettings | Mapping[str, Any],
            data_dir: str, device: str, threads: int, out_curve: str, out_barriers: str) -> None:
    """Linear mode connectivity of a group of pairs of one cell, each with its variants.

    ``pairs`` maps a pair key to ``{"checkpoints": [a, b], "variants": [...], "coordinates":
    {...}}`` (the columns its rows get: :meth:`convergent.sweep.Pair.coordinates`); ``params``:
    :class:`~convergent.settings.LMCSettings`. The data
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
    p = LMCSettings.coerce(params)
    first = next(iter(pairs.values()))["coordinates"]
    data = load_dataset(first["dataset"], data_dir=data_dir, options=settings.get("data"))
    lap("data")
    options = EvalOptions.from_params(p.as_dict())
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
        curve, bars, timings = lmc_pair(model, state_a, state_b, data, default_alphas(int(p.alphas)),
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


def rotation_job(*, run: Run | Mapping[str, Any], settings: Mapping[str, Any], checkpoint: str,
                 params: RotationSettings | Mapping[str, Any], data_dir: str, device: str, threads: int,
                 out_csv: str) -> pd.DataFrame:
    """Brown et al.'s privileged-basis test on one trained network, with its linear control.

    For every configured layer and rotation strength t (R = expm(t·A), A random
    skew-symmetric; t = 0 is the identity control), rotate the layer's pre-activation at
    its rotation site (:func:`convergent.weights.rotation.rotation_site`), retrain
    everything above R, and record accuracy. The linear control (option ``linear``: ReLU →
    identity, max-pool → average pool) trains the same architecture from the same seed
    with the sweep's training settings and applies the same test. ``rotation.layers``
    resolves through :func:`convergent.nets.archspec.rotation_layers`; with ``all``, layers
    without a site (wrn's stem) are named in the log with the reason. ``params``:
    :class:`~convergent.settings.RotationSettings`; ``settings["training"]``: the sweep's
    :class:`~convergent.settings.TrainingSettings`.
    """
    import pandas as pd

    from convergent.nets.archspec import rotation_layers, rotation_refusals
    from convergent.nets.data import load_dataset
    from convergent.nets.train import TrainConfig, init_model, load_state, set_determinism
    from convergent.weights.evaluation import resolve_batch_size
    from convergent.weights.rotation import layer_width, prefix, retrain, rotation_path, rotation_test

    lap("imports")
    log = get_logger()
    run = Run.coerce(run)
    p = RotationSettings.coerce(params)
    seed = run.seed
    set_determinism(seed, threads)
    data = load_dataset(run.dataset, data_dir=data_dir, options=settings.get("data"))
    lap("data")
    training = {**TrainingSettings.coerce(settings["training"]).as_dict(), "device": device}
    relu = init_model(run.arch, run.width, data, settings["model"], seed)
    relu.load_state_dict(load_state(checkpoint))
    linear = init_model(run.arch, run.width, data, {**settings["model"], "linear": True}, seed)
    on = _device(device)
    for net in (relu, linear):   # every tensor of the job follows the networks' device
        net.to(on)
    batch = resolve_batch_size(p.eval_batch_size, relu, tuple(relu.input_shape))
    limit = None if p.cache_mb is None else int(p.cache_mb) << 20
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
    layers = rotation_layers(relu.arch, relu.options, p.layers)
    for name, reason in rotation_refusals(relu.arch, relu.options).items():
        log.info("rotation: %s layer %s has no rotation site and gets no rows: %s", relu.arch, name, reason)
    rows = []
    for model in (relu,) if failed else (relu, linear):
        # the original network's test metrics, once per network (not once per layer and strength)
        original = evaluate_test(model, data, batch)
        cache = None
        for layer in layers:   # in network order: each prefix carries on from the one before
            d = layer_width(model, layer)
            cache = prefix(model, data, layer, batch, limit, previous=cache)   # shared by every strength
            for t in p.strengths:
                R = rotation_path(d, float(t), seed)
                try:
                    row = rotation_test(model, data, layer, R, int(p.retrain_epochs), float(p.lr), seed,
                                        cfg=training, original=original, cache=cache, eval_batch_size=batch,
                                        diagnostic_samples=p.diagnostic_samples)
                except FloatingPointError as err:
                    raise FloatingPointError(f"{err}. Retraining a rotated network diverged at "
                                             f"{lr_hint('rotation.lr', float(p.lr))}") from None
                rows.append({**run.coordinates(),
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
