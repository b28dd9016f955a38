"""Rule ``train`` (rules/train.smk): train one run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from convergent.io import write_digest, write_json
from convergent.jobs._common import _device, lr_hint
from convergent.logs import get_logger, lap
from convergent.settings import TrainingSettings
from convergent.sweep import Run


def train_job(*, run: Run | Mapping[str, Any], settings: Mapping[str, Any], reference: str | None,
              data_dir: str, download: bool, device: str, threads: int,
              out_model: str, out_init: str, out_log_csv: str, out_metrics: str) -> dict[str, Any]:
    """Train one run and write its checkpoints, per-epoch log and final metrics.

    ``run``: the :class:`~convergent.sweep.Run` (a mapping with its coordinates is read by
    :meth:`Run.coerce`); ``settings["training"]``: :class:`~convergent.settings.TrainingSettings`
    (or a mapping of its keys). A frozen run copies its first
    ``frozen_k`` layers from the ``reference`` state dict and keeps them frozen. A
    resume checkpoint next to ``out_model`` lets a restarted job continue where it stopped.
    ``settings["data"]`` (only for datasets with options, e.g. shapes32's size) goes to
    :func:`convergent.nets.data.load_dataset`, as in every other job that loads the data.
    ``run.order_seed`` (a data-order run's; an ordinary run's is its seed) seeds the minibatch
    order and every other random draw of training; the initial weights come from ``run.seed``.
    """
    from convergent.nets.data import load_dataset
    from convergent.nets.train import TrainConfig, init_model, load_state, save_state, set_determinism, train

    lap("imports")
    log = get_logger()
    run = Run.coerce(run)
    training = TrainingSettings.coerce(settings["training"])
    seed, frozen_k, order_seed = run.seed, run.frozen_k, run.order_seed
    set_determinism(seed, threads)
    data = load_dataset(run.dataset, data_dir=data_dir, download=download, options=settings.get("data"))
    lap("data")
    reference_state = load_state(reference) if frozen_k > 0 else None
    model = init_model(run.arch, run.width, data, settings["model"], seed,
                       frozen_k=frozen_k, reference_state=reference_state)
    lap("model")
    save_state(model, out_init)
    lap("write")
    if order_seed != seed:
        # everything random after the initial weights (the global RNG of dropout or augmentation,
        # should a model use them) follows the order seed; an ordinary run's stream is untouched
        set_determinism(order_seed, threads)
    cfg = TrainConfig(**training.as_dict(), device=_device(device))
    resume = Path(out_model).with_name("resume.pt")
    log.info("training %s for %d epochs (frozen_k=%d, resume=%s)", run.coordinates(), cfg.epochs, frozen_k,
             resume.exists())
    try:
        metrics = train(model, data, cfg, seed=order_seed, frozen_k=frozen_k, log_path=Path(out_log_csv),
                        resume_path=resume, log=log.info)
    except FloatingPointError as err:
        raise FloatingPointError(f"{err}. Training diverged at {lr_hint('training.lr', cfg.lr)}") from None
    lap("compute")
    save_state(model, out_model)
    metrics = {**metrics, **run.coordinates(),
               "frozen_from": settings["frozen_from"] if frozen_k else None,
               "reference_seed": settings["reference_seed"] if frozen_k else None,
               "training": training.as_dict(), "model": settings["model"],
               "num_classes": int(data.num_classes), "data": data.info}
    write_json(out_metrics, metrics)
    write_digest(out_metrics)
    resume.unlink(missing_ok=True)
    lap("write")
    log.info("done: test accuracy %.4f", metrics.get("test_acc", float("nan")))
    return metrics
