"""Deterministic, resumable training of a :class:`~convergent.nets.models.ConvergentNet`.

Design choices (and why)

* Data stay as tensors on the device; each epoch draws one permutation from a
  ``torch.Generator`` seeded by the run's seed — no DataLoader, no workers, no
  per-sample Python. A last batch of a single sample is dropped (BatchNorm cannot
  normalise one sample); everything else is used.
* The learning rate is a pure function of the epoch (:func:`lr_at`), set at the start
  of each epoch, so the "scheduler state" of a checkpoint is just the epoch number.
* After every epoch a resume checkpoint (model, optimizer, generator, epoch, log rows)
  is written atomically. A run restarted from it performs exactly the same
  floating-point operations as an uninterrupted one, hence the same final weights.
* On CPU with :func:`set_determinism`, the same configuration and seed give
  byte-identical ``state_dict`` files.
"""

from __future__ import annotations

import csv
import math
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from convergent.nets.data import DatasetSplits
from convergent.io import DamagedOutputError, atomic_file, rebuild_hint, verify_digest, write_digest
from convergent.nets.models import (ConvergentNet, build_model, copy_first_layers, count_parameters,
                               freeze_first_layers)
from convergent.settings import TrainingSettings

LOG_COLUMNS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds")
CHECKPOINT_FORMAT = 1


@dataclass
class TrainConfig:
    """Optimisation settings of one run (the config's ``training:`` section).

    ``schedule``: ``constant``; ``cosine`` (lr·½(1+cos(π·epoch/epochs)), per epoch);
    ``step`` (×``step_gamma`` at each fraction of ``epochs`` in ``step_fractions``).
    """

    # the config keys' defaults are convergent.settings.TrainingSettings' (one definition)
    epochs: int = TrainingSettings.epochs
    batch_size: int = TrainingSettings.batch_size
    optimizer: str = TrainingSettings.optimizer
    lr: float = TrainingSettings.lr
    momentum: float = TrainingSettings.momentum
    weight_decay: float = TrainingSettings.weight_decay
    schedule: str = TrainingSettings.schedule
    device: str = "cpu"
    eval_batch_size: int = TrainingSettings.eval_batch_size
    step_fractions: tuple[float, ...] = (0.5, 0.75)
    step_gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be sgd or adam, got {self.optimizer!r}")
        if self.schedule not in ("constant", "cosine", "step"):
            raise ValueError(f"schedule must be constant, cosine or step, got {self.schedule!r}")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device must be cpu, cuda or auto, got {self.device!r}")
        if self.epochs < 0 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("epochs must be ≥ 0 and batch sizes ≥ 1")
        self.step_fractions = tuple(float(f) for f in self.step_fractions)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None = None, **overrides: Any) -> "TrainConfig":
        """Build from a config mapping; unknown keys raise (typos must not pass silently)."""
        merged = {**dict(d or {}), **overrides}
        known = {f.name for f in fields(cls)}
        unknown = set(merged) - known
        if unknown:
            raise ValueError(f"unknown training keys {sorted(unknown)}; allowed: {sorted(known)}")
        return cls(**merged)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["step_fractions"] = list(self.step_fractions)
        return d


# --- determinism --------------------------------------------------------------------------

def set_determinism(seed: int, threads: int | None = 1) -> None:
    """Seed Python, NumPy and torch; force deterministic kernels; set torch's thread count.

    ``CUBLAS_WORKSPACE_CONFIG`` is set (if unset) because deterministic cuBLAS needs it
    before the first CUDA matmul.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    # The public torch.use_deterministic_algorithms also imports torch._inductor (≈1.5 s per
    # job here) only to set torch.compile's flag; nothing here compiles, so set the eager switch.
    torch._C._set_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    if threads:
        torch.set_num_threads(int(threads))


def resolve_device(device: str) -> torch.device:
    """``auto`` → cuda if available else cpu; ``cuda`` without a GPU raises."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no GPU")
    return torch.device(device)


# --- models -------------------------------------------------------------------------------

def init_model(arch: str, width: int, data: DatasetSplits, options: Mapping[str, Any] | None,
               seed: int, frozen_k: int = 0,
               reference_state: Mapping[str, torch.Tensor] | str | os.PathLike | None = None
               ) -> ConvergentNet:
    """Initialise from ``seed``; then copy the first ``frozen_k`` layers from
    ``reference_state`` (a state dict or a path to one) and freeze them.

    The initialisation does not depend on ``frozen_k``: the unfrozen layers of a frozen
    run start from the same weights as the same seed's ``frozen_k = 0`` run.
    """
    torch.manual_seed(seed)
    model = build_model(arch, width, data.input_shape, data.num_classes, options)
    if frozen_k > 0:
        if reference_state is None:
            raise ValueError(f"frozen_k={frozen_k} needs a reference_state to copy the layers from")
        if isinstance(reference_state, (str, os.PathLike)):
            reference_state = load_state(reference_state)
        copy_first_layers(model, reference_state, frozen_k)
    freeze_first_layers(model, frozen_k)
    return model


def save_state(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model.state_dict()`` (CPU tensors) to ``path`` atomically (temp + rename), then
    its SHA-256 to ``<path>.sha256`` (:func:`convergent.io.write_digest`)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    out = _atomic_torch_save(state, Path(path))
    write_digest(out)
    return out


def load_state(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """A state dict saved by :func:`save_state` (``weights_only=True``: no code runs).

    The file is checked against its recorded SHA-256 first (when one was recorded). A mismatch
    or a file torch cannot read raises :class:`~convergent.io.DamagedOutputError` naming the
    checkpoint and what to rerun.
    """
    verify_digest(path)
    try:
        return torch.load(Path(path), map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:   # torch raises RuntimeError, EOFError, UnpicklingError, ... for a torn file
        raise DamagedOutputError(f"checkpoint {path} cannot be read ({type(err).__name__}: "
                                 f"{str(err).splitlines()[0] if str(err) else ''}). {rebuild_hint(path)}") from err


def _atomic_torch_save(obj: Any, path: Path) -> Path:
    # save through a file object: torch then names the zip's root folder "archive"
    # instead of after the (random) temp file name, so equal states give equal bytes
    with atomic_file(path, f"checkpoint {path}") as f:
        try:
            torch.save(obj, f)
        except RuntimeError as err:   # torch reports a failed write (a full disk) this way
            if "writ" not in str(err).lower():
                raise
            raise OSError(f"{err}".splitlines()[0]) from err
    return path


# --- evaluation ---------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024
             ) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on (x, y) in eval mode.

    Tensors are moved to the model's device batch by batch; the model's train/eval
    mode is restored afterwards.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    try:
        for start in range(0, len(y), batch_size):
            xb = x[start:start + batch_size].to(device, non_blocking=True)
            yb = y[start:start + batch_size].to(device, non_blocking=True)
            logits = model(xb)
            loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
    finally:
        model.train(was_training)
    n = max(len(y), 1)
    return loss_sum / n, correct / n


# --- schedule and optimiser ---------------------------------------------------------------

def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """Learning rate used throughout 0-based ``epoch``."""
    if cfg.schedule == "constant" or cfg.epochs == 0:
        return cfg.lr
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.epochs))
    drops = sum(epoch >= int(round(f * cfg.epochs)) for f in cfg.step_fractions)
    return cfg.lr * cfg.step_gamma ** drops


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (with momentum) or Adam over the *trainable* parameters only, so weight
    decay can never touch a frozen layer."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


# --- training -----------------------------------------------------------------------------

def train(model: ConvergentNet, data: DatasetSplits, cfg: TrainConfig, seed: int, frozen_k: int,
          log_path: str | os.PathLike, resume_path: str | os.PathLike | None = None,
          log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Train ``model`` in place for ``cfg.epochs`` epochs; return final metrics.

    ``log_path`` receives one CSV row per epoch (:data:`LOG_COLUMNS`; ``train_*`` are
    running means over the epoch in train mode, ``test_*`` an eval-mode pass, ``lr`` the
    epoch's learning rate, ``seconds`` the epoch's wall time). If ``resume_path`` is
    given, a checkpoint is written there after every epoch, training continues from it
    when it exists and matches this run, and it is deleted once training completes
    (a stale checkpoint must never short-cut a later rerun).

    Returned metrics: final eval-mode train/test loss and accuracy, epochs, n_params,
    n_trainable, seconds (training wall time of this call), seed, frozen_k, device,
    resumed_from_epoch.
    """
    t_start = time.perf_counter()
    device = resolve_device(cfg.device)
    model.to(device)
    if getattr(model, "frozen_k", None) != frozen_k:   # frozen once (init_model) and recorded on the model
        freeze_first_layers(model, frozen_k)
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    optimizer = make_optimizer(model, cfg)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    fingerprint = _run_fingerprint(model, data, cfg, seed, frozen_k)

    start_epoch, rows = 0, []
    resume = Path(resume_path) if resume_path is not None else None
    if resume is not None and resume.exists():
        state = _try_load_checkpoint(resume, fingerprint, log)
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            gen.set_state(state["generator"])
            start_epoch, rows = int(state["epoch"]), [dict(r) for r in state["rows"]]
            log(f"resuming from {resume} at epoch {start_epoch}/{cfg.epochs}")
    _write_log(Path(log_path), rows)

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        lr = lr_at(cfg, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        train_loss, train_acc = _train_epoch(model, optimizer, x_train, y_train, cfg.batch_size, gen)
        test_loss, test_acc = evaluate(model, data.x_test, data.y_test, cfg.eval_batch_size)
        row = {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc,
               "test_loss": test_loss, "test_acc": test_acc, "lr": lr,
               "seconds": round(time.perf_counter() - t0, 4)}
        rows.append(row)
        _append_log(Path(log_path), row)
        if not all(math.isfinite(row[k]) for k in ("train_loss", "test_loss")):
            raise FloatingPointError(f"non-finite loss at epoch {epoch + 1}: {row}")
        if resume is not None and epoch + 1 < cfg.epochs:
            _atomic_torch_save({"format": CHECKPOINT_FORMAT, "fingerprint": fingerprint,
                                "epoch": epoch + 1, "rows": rows, "model": model.state_dict(),
                                "optimizer": optimizer.state_dict(), "generator": gen.get_state()},
                               resume)
        log(f"epoch {epoch + 1}/{cfg.epochs} lr {lr:.4g} train {train_loss:.4f}/{train_acc:.3f} "
            f"test {test_loss:.4f}/{test_acc:.3f} ({row['seconds']:.2f}s)")

    model.eval()
    metrics = final_metrics(model, data, cfg.eval_batch_size)
    n_params, n_trainable = count_parameters(model)
    metrics.update({"epochs": cfg.epochs, "n_params": n_params, "n_trainable": n_trainable,
                    "seconds": round(time.perf_counter() - t_start, 3), "seed": int(seed),
                    "frozen_k": int(frozen_k), "device": str(device),
                    "resumed_from_epoch": start_epoch})
    if resume is not None:
        resume.unlink(missing_ok=True)
    return metrics


def final_metrics(model: nn.Module, data: DatasetSplits, batch_size: int = 1024) -> dict[str, float]:
    """Eval-mode loss and accuracy on both splits."""
    train_loss, train_acc = evaluate(model, data.x_train, data.y_train, batch_size)
    test_loss, test_acc = evaluate(model, data.x_test, data.y_test, batch_size)
    return {"train_loss": train_loss, "train_acc": train_acc, "test_loss": test_loss, "test_acc": test_acc}


def _train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                 batch_size: int, gen: torch.Generator) -> tuple[float, float]:
    """One pass over a fresh permutation; returns the running mean loss and accuracy."""
    model.train()
    n = len(y)
    perm = torch.randperm(n, generator=gen).to(x.device)
    loss_sum = torch.zeros((), device=x.device, dtype=torch.float64)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    seen = 0
    for start in range(0, n, batch_size):
        idx = perm[start:start + batch_size]
        if len(idx) < 2 and n >= 2:
            break  # a batch of one cannot be batch-normalised
        xb, yb = x[idx], y[idx]
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # accumulate on-device: no host sync per batch
        loss_sum += loss.detach().double() * len(idx)
        correct += (logits.detach().argmax(1) == yb).sum()
        seen += len(idx)
    return float(loss_sum) / max(seen, 1), int(correct) / max(seen, 1)


# --- checkpoints and logs -----------------------------------------------------------------

def _run_fingerprint(model: ConvergentNet, data: DatasetSplits, cfg: TrainConfig, seed: int,
                     frozen_k: int) -> dict[str, Any]:
    """What a resume checkpoint must agree with to be reused (plain types only)."""
    cfg_d = cfg.to_dict()
    cfg_d.pop("device")  # resuming on another device is fine
    cfg_d.pop("eval_batch_size")
    return {"arch": model.arch, "width": model.width, "options": _plain(model.options),
            "data": str(data.info.get("fingerprint")), "config": _plain(cfg_d),
            "seed": int(seed), "frozen_k": int(frozen_k)}


def _plain(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(d.items())}


def _try_load_checkpoint(path: Path, fingerprint: dict[str, Any], log: Callable[[str], Any]
                         ) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it is readable and belongs to this run, else None."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a torn or foreign file: start afresh rather than fail
        log(f"ignoring unreadable resume checkpoint {path}: {err}")
        return None
    if state.get("format") != CHECKPOINT_FORMAT or state.get("fingerprint") != fingerprint:
        log(f"ignoring resume checkpoint {path}: it belongs to a different run configuration")
        return None
    return state


def _write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LOG_COLUMNS)
        w.writeheader()
        w.writerows(rows)


def _append_log(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a", newline="") as f:
        csv.DictWriter(f, fieldnames=LOG_COLUMNS).writerow(row)
