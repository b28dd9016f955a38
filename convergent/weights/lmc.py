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

Permutations exist for every built-in architecture (:mod:`convergent.weights.permute`; one
permutation per residual stream in resnet18/wrn); an imported architecture has neither a
permutation spec nor a REPAIR rule, so its permuted and REPAIR variants are rows with
``applicable=False`` (as bn_reset without BatchNorm). Permuting B does not change its
function, so a permuted variant's α = 1 row equals the unpermuted one up to rounding.

Output of :func:`lmc_curve` / :func:`lmc_pair`: one row per (variant, alpha, split) with
columns :data:`CURVE_COLUMNS`; ``error = 1 − acc``. :func:`barriers` reduces it to one
row per (variant, split) with columns :data:`BARRIER_COLUMNS`.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from convergent.nets.data import DatasetSplits
from convergent.logs import get_logger
from convergent.nets.models import ConvergentNet, is_batchnorm
from convergent.weights.evaluation import forward_batches, per_image, resolve_batch_size, subset_indices, take
from convergent.weights.permute import Perms, activation_matching, apply_permutation, weight_matching
from convergent.weights.repair import endpoint_stats, interpolate_stats, repaired

VARIANTS = ("naive", "bn_reset", "permuted_activation", "permuted_weight",
            "permuted_activation_bn_reset", "permuted_weight_bn_reset",
            "repair", "permuted_activation_repair", "permuted_weight_repair")
SPLITS = ("train", "test")
CURVE_COLUMNS = ("variant", "alpha", "split", "loss", "acc", "error", "n_images", "applicable")
BARRIER_COLUMNS = ("variant", "split", "applicable", "n_alphas", "n_images",
                   "loss_a", "loss_b", "error_a", "error_b",
                   "loss_barrier", "loss_barrier_alpha", "loss_barrier_se",
                   "error_barrier", "error_barrier_alpha", "error_barrier_se",
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
    try:
        forward_batches(model, x, batch_size)
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


def _applicable(treat: str | None, model: nn.Module, method: str | None = None) -> bool:
    """bn_reset needs BatchNorm; permuting and REPAIR need a permutation spec and REPAIR rule,
    which an imported network (``permutable = False``, :class:`convergent.nets.models.ImportedNet`) lacks."""
    if (method is not None or treat == "repair") and not getattr(model, "permutable", True):
        return False
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


@dataclass(frozen=True)
class EvalOptions:
    """How θ(α) is evaluated. The class defaults are the full computation (every image of both
    splits, BatchNorm reset and REPAIR calibrated on the whole training split, every α of the
    grid); the pipeline's defaults (``lmc`` in config.yaml, :class:`convergent.settings.LMCSettings`)
    trade some of it for time, each choice measured in bench/bench_lmc_cost.py.

    * ``eval_batch_size``: images per eval-mode batch, ``"auto"`` (:func:`~convergent.weights.
      evaluation.auto_batch_size`; only speed depends on it) or an int;
    * ``calib_batch_size``: images per batch of the BatchNorm reset and REPAIR calibration
      passes (their statistics average per-batch moments, so it is part of the protocol);
    * ``train_samples`` / ``test_samples``: evaluate a fixed seeded subset of that many images
      of the split (None: all); the barrier's standard error over images is reported;
    * ``calib_samples``: BatchNorm reset and REPAIR statistics on a fixed seeded subset of
      that many training images (None: the whole training split);
    * ``coarse_alphas``: evaluate a coarse sub-grid of that many points of the α grid first,
      then every grid point between the coarse neighbours of the largest excess of each
      (split, loss/error) curve (None: every point);
    * ``subset_seed``: seeds the three subsets (one stream each, the same images for every
      network and pair of a job, so all differences between networks are paired).
    """

    eval_batch_size: int | str = "auto"
    calib_batch_size: int = 1024
    train_samples: int | None = None
    test_samples: int | None = None
    calib_samples: int | None = None
    coarse_alphas: int | None = None
    subset_seed: int = 0

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "EvalOptions":
        """From the ``lmc`` config section (keys that are not fields are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in names})


#: per-image results: (variant, split, α) → (cross-entropy (n,) float64, correct (n,) bool)
Images = dict[tuple[str, str, float], tuple[np.ndarray, np.ndarray]]
#: endpoint evaluations shared by variants and pairs: (network name, treatment, split) → result
Memo = dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]]


@dataclass
class _Views:
    """The images a job evaluates and calibrates on (see :class:`EvalOptions`)."""

    x: dict[str, torch.Tensor]
    y: dict[str, torch.Tensor]
    calib: torch.Tensor
    eval_batch_size: int


def _views(net: ConvergentNet, data: DatasetSplits, opts: EvalOptions) -> _Views:
    seed = int(opts.subset_seed)
    xs, ys = {}, {}
    for k, (split, size) in enumerate((("train", opts.train_samples), ("test", opts.test_samples))):
        x, y = data.split(split)
        idx = subset_indices(len(y), size, [seed, k])
        xs[split], ys[split] = take(x, idx), take(y, idx)
    calib = take(data.x_train, subset_indices(len(data.x_train), opts.calib_samples, [seed, 2]))
    return _Views(xs, ys, calib, resolve_batch_size(opts.eval_batch_size, net, tuple(net.input_shape)))


def coarse_grid(n: int, coarse: int | None) -> list[int]:
    """Indices of the coarse sub-grid of an ``n``-point α grid: ``coarse`` evenly spread points,
    both endpoints and (when the grid has one) its midpoint; all ``n`` when ``coarse`` is None
    or not smaller than ``n``."""
    if coarse is None or coarse >= n:
        return list(range(n))
    idx = {int(i) for i in np.round(np.linspace(0, n - 1, max(int(coarse), 2)))}
    if (n - 1) % 2 == 0:
        idx.add((n - 1) // 2)
    return sorted(idx)


def refine_grid(alphas: np.ndarray, done: Sequence[int], curves: Mapping[str, np.ndarray]) -> list[int]:
    """Grid indices to add after a coarse pass: for every curve (values at the indices ``done``,
    sorted), every index strictly between the coarse neighbours of its largest excess over the
    straight line between the endpoints. A curve with no positive excess adds nothing."""
    done = sorted(done)
    a = np.asarray(alphas, float)[done]
    add: set[int] = set()
    for f in curves.values():
        f = np.asarray(f, float)
        excess = f - ((1 - a) * f[0] + a * f[-1])
        j = int(np.argmax(excess))
        if not excess[j] > 0:
            continue
        add.update(range(done[max(j - 1, 0)] + 1, done[min(j + 1, len(done) - 1)]))
    return sorted(add - set(done))


def lmc_curve(model: ConvergentNet, state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor],
              data: DatasetSplits, alphas: Sequence[float] | None = None, variant: str = "naive",
              batch_size: int | None = None, perms: Perms | None = None, seed: int = 0,
              options: EvalOptions | None = None, *, names: tuple[str, str] = ("A", "B"),
              memo: Memo | None = None, images: Images | None = None) -> pd.DataFrame:
    """Loss/accuracy of θ(α) on both splits for one ``variant`` (columns :data:`CURVE_COLUMNS`).

    ``model`` is only a container of the right architecture (its weights are
    overwritten in a private copy). ``perms`` may pass precomputed matching results
    for the permuted variants (so :func:`lmc_pair` matches once per method).
    ``options`` say which images and α are evaluated (:class:`EvalOptions`; default: all);
    ``batch_size`` overrides its ``calib_batch_size``.

    Endpoints: θ(0) is A and θ(1) is B (or B permuted, the same function), and REPAIR is the
    identity there, so an endpoint is evaluated once per (network, BatchNorm treatment) and
    kept in ``memo`` under the networks' ``names``; variants and pairs that share a network and
    a ``memo`` reuse it. ``images``, when given, receives every per-image result (for the
    barriers' standard errors, :func:`barriers`).
    """
    opts = options or EvalOptions()
    if batch_size is not None:
        opts = dataclasses.replace(opts, calib_batch_size=int(batch_size))
    grid = default_alphas() if alphas is None else np.asarray(alphas, dtype=float)
    method, treat = _parse(variant)
    if not _applicable(treat, model, method):
        return pd.DataFrame([{"variant": variant, "alpha": float(a), "split": s, "loss": np.nan,
                              "acc": np.nan, "error": np.nan, "n_images": 0, "applicable": False}
                             for a in grid for s in SPLITS], columns=list(CURVE_COLUMNS))
    if method is not None:
        if perms is None:
            perms = match(model, state_a, state_b, method, data, opts.calib_batch_size, seed)
        state_b = apply_permutation(state_b, model, perms)
    net = copy.deepcopy(model)
    net.frozen_k = 0  # evaluation only; a frozen prefix must not block BN resetting
    views = _views(net, data, opts)
    memo = {} if memo is None else memo
    treat_key = "bn_reset" if treat == "bn_reset" else "plain"   # REPAIR is the identity at the endpoints
    stats: list = []
    results: dict[int, dict[str, tuple[np.ndarray, np.ndarray]]] = {}

    def evaluate_at(i: int) -> None:
        a = float(grid[i])
        end = names[0] if a == 0.0 else names[1] if a == 1.0 else None
        if end is not None and all((end, treat_key, s) in memo for s in SPLITS):
            results[i] = {s: memo[(end, treat_key, s)] for s in SPLITS}
            return
        if treat == "repair" and end is None and not stats:
            stats.extend(endpoint_stats(net, state_a, state_b, views.calib, opts.calib_batch_size))
        net.load_state_dict(interpolate(state_a, state_b, a))
        if treat == "bn_reset":
            reset_bn_stats(net, views.calib, opts.calib_batch_size)
        ctx = nullcontext()
        if treat == "repair" and end is None:
            ctx = repaired(net, interpolate_stats(stats[0], stats[1], a), views.calib, opts.calib_batch_size)
        with ctx:
            results[i] = {s: per_image(net, views.x[s], views.y[s], views.eval_batch_size) for s in SPLITS}
        if end is not None:
            memo.update({(end, treat_key, s): results[i][s] for s in SPLITS})

    for i in coarse_grid(len(grid), opts.coarse_alphas):
        evaluate_at(i)
    if len(results) < len(grid):
        done = sorted(results)
        curves = {f"{s}_{q}": [r[s][0].mean() if q == "loss" else 1.0 - r[s][1].mean()
                               for r in (results[i] for i in done)]
                  for s in SPLITS for q in ("loss", "error")}
        for i in refine_grid(grid, done, curves):
            evaluate_at(i)
    rows = []
    for i in sorted(results):
        for split in SPLITS:
            loss, correct = results[i][split]
            if images is not None:
                images[(variant, split, float(grid[i]))] = (loss, correct)
            acc = float(correct.mean())
            rows.append({"variant": variant, "alpha": float(grid[i]), "split": split, "loss": float(loss.mean()),
                         "acc": acc, "error": 1.0 - acc, "n_images": len(loss), "applicable": True})
    return pd.DataFrame(rows, columns=list(CURVE_COLUMNS))


def lmc_pair(model: ConvergentNet, state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor],
             data: DatasetSplits, alphas: Sequence[float] | None = None,
             variants: Sequence[str] = VARIANTS, batch_size: int | None = None, seed: int = 0,
             options: EvalOptions | None = None, *, names: tuple[str, str] = ("A", "B"),
             memo: Memo | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """Every variant for one pair: ``(curve, barriers(curve, images), timings)``.

    Matching runs once per method and is shared by its ``_bn_reset``/``_repair`` variants; its wall
    time is reported in ``timings`` (seconds, keys ``match_<method>`` and ``curve_<variant>``).
    ``options``, ``names`` and ``memo`` as in :func:`lmc_curve` (one memo for the pair unless given).
    """
    opts = options or EvalOptions()
    if batch_size is not None:
        opts = dataclasses.replace(opts, calib_batch_size=int(batch_size))
    perms_cache: dict[str, Perms] = {}
    timings: dict[str, float] = {}
    frames = []
    images: Images = {}
    memo = {} if memo is None else memo
    log = get_logger()
    for i, variant in enumerate(variants):
        method, treat = _parse(variant)
        perms = None
        if method is not None and _applicable(treat, model, method):
            if method not in perms_cache:
                t0 = time.perf_counter()
                perms_cache[method] = match(model, state_a, state_b, method, data, opts.calib_batch_size, seed)
                timings[f"match_{method}"] = time.perf_counter() - t0
            perms = perms_cache[method]
        t0 = time.perf_counter()
        frames.append(lmc_curve(model, state_a, state_b, data, alphas, variant, None, perms, seed, opts,
                                names=names, memo=memo, images=images))
        timings[f"curve_{variant}"] = time.perf_counter() - t0
        log.info("lmc variant %d/%d %s: %.2f s", i + 1, len(variants), variant, timings[f"curve_{variant}"])
    curve = pd.concat(frames, ignore_index=True)
    return curve, barriers(curve, images), timings


def _barrier(alpha: np.ndarray, f: np.ndarray) -> tuple[float, float]:
    """max_α [f(α) − ((1−α) f(0) + α f(1))] and its argmax α; f sorted by α, α[0]=0, α[-1]=1."""
    excess = f - ((1 - alpha) * f[0] + alpha * f[-1])
    i = int(np.argmax(excess))
    return float(excess[i]), float(alpha[i])


def _barrier_se(per_alpha: Mapping[float, np.ndarray], at: float) -> float:
    """Standard error over images of the mean excess at ``at``: the per-image excess
    e_i = f_i(at) − ((1−at) f_i(0) + at f_i(1)) is paired (the same images at every α), so its
    spread is the uncertainty the finite image set leaves in the barrier. NaN without the
    per-image values or with fewer than two images."""
    try:
        e = per_alpha[at] - ((1 - at) * per_alpha[0.0] + at * per_alpha[1.0])
    except KeyError:
        return float("nan")
    return float(e.std(ddof=1) / np.sqrt(len(e))) if len(e) > 1 else float("nan")


def barriers(curve: pd.DataFrame, images: Images | None = None) -> pd.DataFrame:
    """One row per (variant, split): columns :data:`BARRIER_COLUMNS`.

    ``*_barrier`` = max over the evaluated α of the excess over the straight line between
    the endpoints (Entezari et al.; ≥ 0 because the endpoints themselves have excess 0);
    ``*_mid`` the value at α = 0.5 and ``*_mid_excess`` its excess over the endpoint mean
    (NaN when 0.5 was not evaluated). The grid must contain α = 0 and α = 1.
    ``*_barrier_se``: the barrier's standard error over the images evaluated (paired
    per-image excess at the barrier's α, :func:`_barrier_se`); NaN unless ``images`` (from
    :func:`lmc_curve`) is given. When a split is subsampled (m of n images), the subset's
    barrier differs from the whole split's by about √(1 − m/n) times this.
    """
    rows = []
    images = images or {}
    for (variant, split), g in curve.groupby(["variant", "split"], sort=False):
        g = g.sort_values("alpha")
        alpha = g["alpha"].to_numpy(float)
        row = {"variant": variant, "split": split, "n_alphas": len(g),
               "n_images": int(g["n_images"].max()) if "n_images" in g and g["applicable"].all() else 0,
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
            per = {a: (images[(variant, split, a)][0] if q == "loss"
                       else 1.0 - images[(variant, split, a)][1].astype(float))
                   for a in alpha if (variant, split, a) in images}
            row.update({f"{q}_a": f[0], f"{q}_b": f[-1], f"{q}_barrier": b, f"{q}_barrier_alpha": at,
                        f"{q}_barrier_se": _barrier_se(per, at),
                        f"{q}_mid": f[mid[0]] if len(mid) else np.nan,
                        f"{q}_mid_excess": f[mid[0]] - 0.5 * (f[0] + f[-1]) if len(mid) else np.nan})
        rows.append(row)
    return pd.DataFrame(rows, columns=list(BARRIER_COLUMNS))
