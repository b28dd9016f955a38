"""Linear mode connectivity: loss and error along θ(α) = (1−α)θ_A + αθ_B, and barriers.

Variants (``VARIANTS``)

* ``naive``: interpolate every float tensor, BatchNorm running statistics included.
* ``bn_reset``: as ``naive``, then recompute every BatchNorm's running mean/variance
  on the training data for each θ(α) (cumulative average, ``momentum=None``, as
  ``torch.optim.swa_utils.update_bn``). Nets without BatchNorm: rows are marked
  ``applicable=False`` with NaN values — never numbers that merely repeat ``naive``.
* ``permuted_activation`` / ``permuted_weight``: B is first permuted onto A
  (:func:`convergent.weights.permute.activation_matching` on the training inputs /
  :func:`~convergent.weights.permute.weight_matching`), then ``naive``.
* ``permuted_activation_bn_reset`` / ``permuted_weight_bn_reset``: permuted, then
  ``bn_reset`` (Git Re-Basin's protocol for BN nets). Not applicable without BN.
* ``repair``, ``permuted_activation_repair``, ``permuted_weight_repair``: θ(α)
  (unpermuted or permuted) with REPAIR (Jordan et al. 2023): every hidden channel's
  mean and std reset to the interpolation of the endpoints' (on the training inputs;
  choices in :mod:`convergent.weights.repair`). Applicable to every architecture.

Permutations exist for every architecture (:mod:`convergent.weights.permute`; one
permutation per residual stream in resnet18/wrn). Permuting B does not change its
function, so a permuted variant's α = 1 row equals the unpermuted one up to rounding.

Output of :func:`lmc_curve` / :func:`lmc_pair`: one row per (variant, alpha, split) with
columns :data:`CURVE_COLUMNS`; ``error = 1 − acc``. :func:`barriers` reduces it to one
row per (variant, split) with columns :data:`BARRIER_COLUMNS`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext

import numpy as np
import pandas as pd
import torch
from torch import nn

from convergent.data import DatasetSplits
from convergent.logs import get_logger
from convergent.models import ConvergentNet, is_batchnorm
from convergent.train import evaluate
from convergent.weights.permute import Perms, activation_matching, apply_permutation, weight_matching
from convergent.weights.repair import endpoint_stats, interpolate_stats, repaired

VARIANTS = ("naive", "bn_reset", "permuted_activation", "permuted_weight",
            "permuted_activation_bn_reset", "permuted_weight_bn_reset",
            "repair", "permuted_activation_repair", "permuted_weight_repair")
SPLITS = ("train", "test")
CURVE_COLUMNS = ("variant", "alpha", "split", "loss", "acc", "error", "applicable")
BARRIER_COLUMNS = ("variant", "split", "applicable", "n_alphas",
                   "loss_a", "loss_b", "error_a", "error_b",
                   "loss_barrier", "loss_barrier_alpha", "error_barrier", "error_barrier_alpha",
                   "loss_mid", "error_mid", "loss_mid_excess", "error_mid_excess")


def default_alphas(n: int = 11) -> np.ndarray:
    """``n`` evenly spaced α in [0, 1] (11 → steps of 0.1, midpoint included)."""
    return np.linspace(0.0, 1.0, n)


def interpolate(state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor],
                alpha: float) -> dict[str, torch.Tensor]:
    """(1−α)·A + α·B for every floating-point tensor; non-float buffers (e.g.
    ``num_batches_tracked``) are copied from A. ``torch.lerp`` returns A exactly at α=0
    and B exactly at α=1, so the endpoints reproduce the endpoint networks bit for bit.
    """
    if state_a.keys() != state_b.keys():
        raise KeyError("state dicts have different keys")
    out = {}
    for k, a in state_a.items():
        b = state_b[k]
        out[k] = torch.lerp(a, b.to(a.dtype), float(alpha)) if a.is_floating_point() else a.clone()
    return out


def has_batchnorm(model: nn.Module) -> bool:
    return any(is_batchnorm(m) for m in model.modules())


@torch.no_grad()
def reset_bn_stats(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> None:
    """Recompute every BatchNorm's running stats on ``x`` in place (cumulative average over
    batches, like ``torch.optim.swa_utils.update_bn``); other modules run in train mode
    only for that pass. Momenta and the train/eval mode are restored afterwards."""
    bns = [m for m in model.modules() if is_batchnorm(m)]
    if not bns:
        return
    momenta = {m: m.momentum for m in bns}
    was = {m: m.training for m in model.modules()}
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()  # ConvergentNet.train keeps frozen layers in eval; BN must update here
    for m in bns:
        m.train()
    device = next(model.parameters()).device
    try:
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size]
            if len(xb) < 2:
                break  # a batch of one has no variance
            model(xb.to(device))
    finally:
        for m in bns:
            m.momentum = momenta[m]
        for m, t in was.items():
            m.training = t


def _parse(variant: str) -> tuple[str | None, str | None]:
    """``(matching method or None, treatment of θ(α): "bn_reset", "repair" or None)``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown LMC variant {variant!r}; allowed: {', '.join(VARIANTS)}")
    perm = "activation" if "activation" in variant else "weight" if "weight" in variant else None
    treat = "bn_reset" if variant.endswith("bn_reset") else "repair" if variant.endswith("repair") else None
    return perm, treat


def _applicable(treat: str | None, model: nn.Module) -> bool:
    return treat != "bn_reset" or has_batchnorm(model)


def match(model: ConvergentNet, state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor],
          method: str, data: DatasetSplits, batch_size: int = 1024, seed: int = 0) -> Perms:
    """Permutations of B onto A by ``method`` ∈ {"activation", "weight"} (activation
    matching uses the training inputs)."""
    if method == "weight":
        return weight_matching(state_a, state_b, model, seed=seed)
    if method == "activation":
        ma, mb = copy.deepcopy(model), copy.deepcopy(model)
        ma.load_state_dict(state_a), mb.load_state_dict(state_b)
        # the moments are exact sums, so the batch size only trades memory: every probe of
        # both nets is held at once (a ResNet's early maps are large), hence at most 256
        return activation_matching(ma, mb, data.x_train, batch_size=min(batch_size, 256))
    raise ValueError(f"unknown matching method {method!r}")


def lmc_curve(model: ConvergentNet, state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor],
              data: DatasetSplits, alphas: Sequence[float] | None = None, variant: str = "naive",
              batch_size: int = 1024, perms: Perms | None = None, seed: int = 0) -> pd.DataFrame:
    """Loss/accuracy of θ(α) on both splits for one ``variant`` (columns :data:`CURVE_COLUMNS`).

    ``model`` is only a container of the right architecture (its weights are
    overwritten in a private copy). ``perms`` may pass precomputed matching results
    for the permuted variants (so :func:`lmc_pair` matches once per method).
    """
    alphas = default_alphas() if alphas is None else np.asarray(alphas, dtype=float)
    method, treat = _parse(variant)
    if not _applicable(treat, model):
        return pd.DataFrame([{"variant": variant, "alpha": float(a), "split": s, "loss": np.nan,
                              "acc": np.nan, "error": np.nan, "applicable": False}
                             for a in alphas for s in SPLITS], columns=list(CURVE_COLUMNS))
    if method is not None:
        if perms is None:
            perms = match(model, state_a, state_b, method, data, batch_size, seed)
        state_b = apply_permutation(state_b, model, perms)
    net = copy.deepcopy(model)
    net.frozen_k = 0  # evaluation only; a frozen prefix must not block BN resetting
    if treat == "repair":
        stats_a, stats_b = endpoint_stats(net, state_a, state_b, data.x_train, batch_size)
    rows = []
    for a in alphas:
        net.load_state_dict(interpolate(state_a, state_b, float(a)))
        if treat == "bn_reset":
            reset_bn_stats(net, data.x_train, batch_size)
        ctx = nullcontext()
        if treat == "repair" and 0.0 < a < 1.0:  # at the endpoints REPAIR is the identity
            ctx = repaired(net, interpolate_stats(stats_a, stats_b, float(a)), data.x_train, batch_size)
        with ctx:
            for split in SPLITS:
                x, y = data.split(split)
                loss, acc = evaluate(net, x, y, batch_size)
                rows.append({"variant": variant, "alpha": float(a), "split": split, "loss": loss,
                             "acc": acc, "error": 1.0 - acc, "applicable": True})
    return pd.DataFrame(rows, columns=list(CURVE_COLUMNS))


def lmc_pair(model: ConvergentNet, state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor],
             data: DatasetSplits, alphas: Sequence[float] | None = None,
             variants: Sequence[str] = VARIANTS, batch_size: int = 1024, seed: int = 0
             ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """Every variant for one pair: ``(curve, barriers(curve), timings)``.

    Matching runs once per method and is shared by its ``_bn_reset``/``_repair`` variants; its wall
    time is reported in ``timings`` (seconds, keys ``match_<method>`` and ``curve_<variant>``).
    """
    perms_cache: dict[str, Perms] = {}
    timings: dict[str, float] = {}
    frames = []
    log = get_logger()
    for i, variant in enumerate(variants):
        method, treat = _parse(variant)
        perms = None
        if method is not None and _applicable(treat, model):
            if method not in perms_cache:
                t0 = time.perf_counter()
                perms_cache[method] = match(model, state_a, state_b, method, data, batch_size, seed)
                timings[f"match_{method}"] = time.perf_counter() - t0
            perms = perms_cache[method]
        t0 = time.perf_counter()
        frames.append(lmc_curve(model, state_a, state_b, data, alphas, variant, batch_size, perms, seed))
        timings[f"curve_{variant}"] = time.perf_counter() - t0
        log.info("lmc variant %d/%d %s: %.2f s", i + 1, len(variants), variant, timings[f"curve_{variant}"])
    curve = pd.concat(frames, ignore_index=True)
    return curve, barriers(curve), timings


def _barrier(alpha: np.ndarray, f: np.ndarray) -> tuple[float, float]:
    """max_α [f(α) − ((1−α) f(0) + α f(1))] and its argmax α; f sorted by α, α[0]=0, α[-1]=1."""
    excess = f - ((1 - alpha) * f[0] + alpha * f[-1])
    i = int(np.argmax(excess))
    return float(excess[i]), float(alpha[i])


def barriers(curve: pd.DataFrame) -> pd.DataFrame:
    """One row per (variant, split): columns :data:`BARRIER_COLUMNS`.

    ``*_barrier`` = max over the α grid of the excess over the straight line between
    the endpoints (Entezari et al.; ≥ 0 because the endpoints themselves have excess 0);
    ``*_mid`` the value at α = 0.5 and ``*_mid_excess`` its excess over the endpoint mean
    (NaN when 0.5 is not on the grid). The grid must contain α = 0 and α = 1.
    """
    rows = []
    for (variant, split), g in curve.groupby(["variant", "split"], sort=False):
        g = g.sort_values("alpha")
        alpha = g["alpha"].to_numpy(float)
        row = {"variant": variant, "split": split, "n_alphas": len(g),
               "applicable": bool(g["applicable"].all())}
        if not row["applicable"]:
            rows.append({**row, **{c: np.nan for c in BARRIER_COLUMNS if c not in row}})
            continue
        if not (np.isclose(alpha[0], 0.0) and np.isclose(alpha[-1], 1.0)):
            raise ValueError("the α grid must include both endpoints 0 and 1")
        mid = np.flatnonzero(np.isclose(alpha, 0.5))
        for q in ("loss", "error"):
            f = g[q].to_numpy(float)
            b, at = _barrier(alpha, f)
            row.update({f"{q}_a": f[0], f"{q}_b": f[-1], f"{q}_barrier": b, f"{q}_barrier_alpha": at,
                        f"{q}_mid": f[mid[0]] if len(mid) else np.nan,
                        f"{q}_mid_excess": f[mid[0]] - 0.5 * (f[0] + f[-1]) if len(mid) else np.nan})
        rows.append(row)
    return pd.DataFrame(rows, columns=list(BARRIER_COLUMNS))
