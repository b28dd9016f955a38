"""Brown et al.'s privileged-basis test: rotate a layer's pre-activation, retrain above it.

Protocol (the project's operationalisation, see docs/controls.md, "Rotation test")

1. Take a trained network and a layer ``ℓ``. Insert a fixed orthogonal ``R`` (d×d)
   at ``ℓ``'s *rotation site*: a pre-activation, between a linear map (+ BatchNorm) and
   its nonlinearity, whose only consumers are linear maps (convs / Linear) that can
   absorb R⁻¹. The pre-activation h (b, d) — or (b, c, *spatial) with channels as
   units — becomes ``h R`` (unit j ← Σ_i h_i R_ij). A rotation *after* the
   nonlinearity would be absorbed exactly by the next linear map, so it would test nothing.
2. Freeze everything at and below R (parameters, BatchNorm statistics, and R itself):
   the layers before ``ℓ`` and the modules of ``ℓ`` that compute R's input. Retrain
   everything else (the consumers of R, the rest of the network and the head) from its
   trained weights for ``retrain_epochs`` with :func:`convergent.nets.train.train`.
3. Report test accuracy/loss of the original, the rotated net before retraining and
   after. A privileged basis (ReLU) shows a gap after retraining that the controls do
   not: ``R = I`` (retraining alone) and the ``linear`` variant of the architecture,
   where the consumers can undo R exactly (each consumer's weight W on R's unit axis
   becomes W R: (h R)(W R)ᵀ = h Wᵀ).

Sites (:func:`rotation_site`; :data:`convergent.nets.archspec.ROTATION_SITES` in words)

* mlp ``fc{i}`` / cnn ``conv{i}`` / resnet18 ``stem`` (a :class:`~convergent.nets.models.Block`):
  between ``norm`` and ``act``; the whole layer is below R (``frozen_k = ℓ``).
  Consumers: the next layer's linear map (after its pool, an average pool in the
  linear control) or the head's Linear (after global average pooling, which commutes).
  The resnet18 stem feeds the residual stream of stage 1, whose first block
  (``layer1.0``) has an identity shortcut that nothing could train to undo R; the test
  replaces it by a trainable 1×1 conv initialised to the identity (for every R, the
  ``R = I`` control and ReLU and linear nets alike, so all compare the same network),
  which with ``layer1.0.conv1`` is then the complete set of consumers.
* resnet18 ``layer{s}.{b}`` (:class:`~convergent.nets.models.BasicBlock`): inside the block,
  between ``bn1`` and the inner ReLU; below R: the earlier layers plus ``conv1``, ``bn1``
  (``frozen_k = ℓ - 1`` and those two *pinned*); consumer: ``conv2`` alone.
* wrn ``block{s}.{b}`` (:class:`~convergent.nets.models.PreActBlock`): inside the block,
  between ``bn2`` and its ReLU; below R: the earlier layers plus ``bn1``, ``conv1``,
  ``bn2``; consumer: ``conv2`` alone.
* wrn ``stem``: refused (:func:`convergent.nets.archspec.rotation_refusals` says why).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.linalg
import torch
from torch import nn

from dataclasses import dataclass

from convergent.nets import archspec
from convergent.nets.data import DatasetSplits
from convergent.nets.models import BasicBlock, Block, ConvergentNet, PreActBlock
from convergent.nets.train import TrainConfig, _train_epoch, evaluate, lr_at, make_optimizer
from convergent.weights.evaluation import model_device, subset_indices, take


class NotRotatable(ValueError):
    """A layer without a rotation site; the message says why."""


@dataclass(frozen=True)
class RotationSite:
    """Where R goes for one layer.

    ``attr`` is the attribute of ``layers[index]`` that R is put in front of (``act`` of a
    Block, the ``mid`` placeholder of a residual block); ``units`` is d (channels or
    features of the pre-activation); ``frozen_k`` the whole layers frozen during
    retraining; ``pinned`` the sub-modules of ``layers[index]`` below R that stay frozen
    too; ``consumers`` names every module that reads R's output (documentation and tests).
    """

    layer: str
    index: int
    attr: str
    units: int
    frozen_k: int
    pinned: tuple[str, ...]
    consumers: tuple[str, ...]


def rotation_site(model: ConvergentNet, layer: str) -> RotationSite:
    """The rotation site of ``layer`` in ``model``; :class:`NotRotatable` if it has none."""
    idx = model.layer_index(layer)
    refused = archspec.rotation_refusals(model.arch, model.options)
    if layer in refused:
        raise NotRotatable(f"{model.arch} layer {layer!r} is not rotatable: {refused[layer]}")
    block = model.layers[idx]
    nxt = f"layers.{idx + 1}" if idx + 1 < len(model.layers) else "head"
    if isinstance(block, Block):
        if model.arch == "resnet18":  # the stem: layer1.0 reads it through conv1 and its shortcut
            consumers = (f"{nxt}.conv1", f"{nxt}.shortcut")
        else:
            consumers = (f"{nxt}.linear",)
        return RotationSite(layer, idx, "act", int(block.linear.weight.shape[0]), idx + 1, (), consumers)
    if isinstance(block, BasicBlock):
        return RotationSite(layer, idx, "mid", int(block.conv1.out_channels), idx, ("conv1", "bn1"),
                            (f"layers.{idx}.conv2",))
    if isinstance(block, PreActBlock):
        return RotationSite(layer, idx, "mid", int(block.conv1.out_channels), idx, ("bn1", "conv1", "bn2"),
                            (f"layers.{idx}.conv2",))
    raise NotRotatable(f"{model.arch} layer {layer!r}: no rotation site for {type(block).__name__}")


class Rotate(nn.Module):
    """``h ↦ h R`` on the unit axis (last axis of (b, d); axis 1 of (b, c, *spatial)).

    ``R`` is a buffer: saved with the state dict, never trained.
    """

    def __init__(self, R: torch.Tensor):
        super().__init__()
        if R.dim() != 2 or R.shape[0] != R.shape[1]:
            raise ValueError(f"R must be square, got {tuple(R.shape)}")
        self.register_buffer("R", R.detach().clone())

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        R = self.R.to(h.dtype)
        if h.dim() == 2:
            return h @ R
        # contiguous: the einsum returns a channels-last view, which crashed (heap corruption)
        # the CPU convolution that reads it under deterministic algorithms (torch 2.14)
        return torch.einsum("bc...,cd->bd...", h, R).contiguous()


def random_rotation(d: int, seed: int) -> np.ndarray:
    """Haar-random rotation in SO(d) (d×d, float64, det +1); ``d = 1`` gives [[1]]."""
    from scipy.stats import special_ortho_group   # ≈ 0.2 s on top of scipy.linalg; the job never needs it

    if d == 1:
        return np.ones((1, 1))
    return special_ortho_group.rvs(d, random_state=np.random.default_rng(seed))


def rotation_path(d: int, t: float, seed: int) -> np.ndarray:
    """``expm(t·A)`` for a random skew-symmetric A (d×d, float64), a path in SO(d) from I (t=0).

    A = (M − Mᵀ)/2 with M standard normal, scaled so its largest rotation angle is π:
    t = 1 turns the fastest plane by 180°, t ∈ [0, 1] sweeps "how much" rotation.
    The same ``seed`` gives the same A for every t.
    """
    m = np.random.default_rng(seed).standard_normal((d, d))
    a = (m - m.T) / 2
    top = np.abs(np.linalg.eigvals(a)).max() if d > 1 else 0.0
    if top > 0:
        a = a * (np.pi / top)
    return scipy.linalg.expm(float(t) * a)


def layer_width(model: ConvergentNet, layer: str) -> int:
    """Number of units d of ``layer``'s rotation site (R is d×d)."""
    return rotation_site(model, layer).units


def _identity_shortcut(block: BasicBlock, channels: int) -> nn.Module:
    """A trainable 1×1 conv equal to the identity, like ``block.conv1`` in dims, dtype, device."""
    ref = block.conv1
    conv = type(ref)(channels, channels, 1, bias=False).to(device=ref.weight.device, dtype=ref.weight.dtype)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight.view(channels, channels, -1)[:, :, 0] = torch.eye(channels, dtype=ref.weight.dtype)
    return conv


def insert_rotation(model: ConvergentNet, layer: str, R: np.ndarray | torch.Tensor) -> ConvergentNet:
    """A deep copy of ``model`` with ``Rotate(R)`` at ``layer``'s rotation site.

    The site's attribute ``a`` (see :func:`rotation_site`) becomes ``Sequential(Rotate(R), a)``;
    the modules below R inside the layer are marked ``pinned``; for the resnet18 stem,
    ``layer1.0``'s identity shortcut becomes a trainable identity 1×1 conv (also for R = I).
    """
    site = rotation_site(model, layer)
    ref = next(model.parameters())
    R = torch.as_tensor(np.asarray(R), dtype=ref.dtype)
    if tuple(R.shape) != (site.units, site.units):
        raise ValueError(f"{layer} has {site.units} units; R is {tuple(R.shape)}")
    net = copy.deepcopy(model)
    block = net.layers[site.index]
    rot = Rotate(R).to(device=ref.device, dtype=ref.dtype)
    setattr(block, site.attr, nn.Sequential(rot, getattr(block, site.attr)))
    for name in site.pinned:
        getattr(block, name).pinned = True
    if model.arch == "resnet18" and isinstance(block, Block):
        nxt = net.layers[site.index + 1]
        if isinstance(nxt.shortcut, nn.Identity):
            nxt.shortcut = _identity_shortcut(nxt, site.units)
    net.freeze_first(site.frozen_k)
    return net


class Above(nn.Module):
    """``layers[start:]`` and the head of ``net``: the network above a cached prefix.

    Its input is the output of ``net.layers[:start]`` (``start = 0``: the images). ``net`` is its
    only child, so ``train()``/``eval()`` reach :meth:`ConvergentNet.train`, which keeps frozen
    layers and pinned modules in eval mode, and ``parameters()`` are ``net``'s, in order.
    """

    def __init__(self, net: ConvergentNet, start: int):
        super().__init__()
        self.net, self.start = net, int(start)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net.head(self.net.forward_layers(h, len(self.net.layers), start=self.start))


@dataclass(frozen=True)
class Prefix:
    """Outputs of the first ``start`` layers of a network (eval mode) on both splits.

    Everything below a rotation site's layer is frozen and in eval mode during retraining,
    so its output on an image never changes: it is computed once per (network, layer) and
    shared by every rotation strength, epoch and evaluation (:func:`prefix`).
    """

    start: int
    x_train: torch.Tensor
    x_test: torch.Tensor


@torch.no_grad()
def _forward_range(model: ConvergentNet, h: torch.Tensor, start: int, stop: int, batch_size: int) -> torch.Tensor:
    """``layers[start:stop]`` of ``model`` (eval mode) applied to ``h``, the output of
    ``layers[:start]`` (``start = 0``: the images), in batches on the model's device."""
    was = model.training
    model.eval()
    device = model_device(model)
    try:
        return torch.cat([model.forward_layers(h[s:s + batch_size].to(device), stop, start=start)
                          for s in range(0, len(h), batch_size)])
    finally:
        model.train(was)


def prefix(model: ConvergentNet, data: DatasetSplits, layer: str, batch_size: int,
           limit_bytes: int | None, previous: Prefix | None = None) -> Prefix:
    """:class:`Prefix` of ``model`` below ``layer``'s rotation site (its whole layers before
    the site's layer), on the model's device; the raw images (``start = 0``) when the site is in
    the first layer or the outputs would take more than ``limit_bytes`` (None: no limit).

    ``previous``, a prefix of the same model ending at or below this one (the layer before, when
    a job walks its layers in order), is carried on through the layers in between instead of
    recomputing the network from the images: the same eval-mode computation, done once.
    """
    start = rotation_site(model, layer).index
    if start > 0:
        with torch.no_grad():
            was = model.training
            model.eval()
            one = model.forward_layers(data.x_train[:1].to(model_device(model)), start)
            model.train(was)
        size = one.numel() * one.element_size() * (len(data.x_train) + len(data.x_test))
        if limit_bytes is None or size <= limit_bytes:
            base = previous if previous is not None and previous.start <= start else Prefix(0, data.x_train, data.x_test)
            return Prefix(start, _forward_range(model, base.x_train, base.start, start, batch_size),
                          _forward_range(model, base.x_test, base.start, start, batch_size))
    return Prefix(0, data.x_train, data.x_test)


def retrain(net: ConvergentNet, runner: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
            seed: int, frozen_k: int) -> tuple[float, float]:
    """``cfg.epochs`` epochs of training as :func:`convergent.nets.train.train` runs them (same
    optimiser over the trainable parameters, schedule, seeded batch order), without its
    per-epoch test pass, log and final pass: the caller evaluates what it reports.

    ``runner`` computes the logits from ``x`` (``net`` itself, or :class:`Above` on a
    :class:`Prefix`). Returns the last epoch's running (train-mode) loss and accuracy;
    a non-finite loss raises ``FloatingPointError``.
    """
    net.freeze_first(frozen_k)
    device = model_device(net)
    x, y = x.to(device), y.to(device)
    optimizer = make_optimizer(runner, cfg)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    loss, acc = float("nan"), float("nan")
    for epoch in range(cfg.epochs):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(cfg, epoch)
        loss, acc = _train_epoch(runner, optimizer, x, y, cfg.batch_size, gen)
        if not math.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at epoch {epoch + 1}/{cfg.epochs}: training loss {loss}")
    return loss, acc


def rotation_test(model: ConvergentNet, data: DatasetSplits, layer: str, R: np.ndarray | torch.Tensor,
                  retrain_epochs: int, lr: float, seed: int,
                  cfg: TrainConfig | Mapping[str, Any] | None = None, *,
                  original: tuple[float, float] | None = None, cache: Prefix | None = None,
                  eval_batch_size: int | None = None, diagnostic_samples: int | None = None) -> dict[str, Any]:
    """Rotate ``layer``'s pre-activation by ``R``, retrain everything above it, report accuracy.

    ``model`` is not modified. ``cfg`` sets the other retraining options (defaults of
    :class:`TrainConfig`: SGD momentum 0.9, cosine schedule, weight decay 5e-4, batch
    64); ``epochs`` and ``lr`` always come from the arguments. ``seed`` drives the
    batch order of retraining.

    Work shared between calls (see :func:`convergent.jobs.rotation_job`): ``original`` is
    ``model``'s (test loss, test accuracy) when already known; ``cache`` the :func:`prefix`
    of ``model`` below ``layer`` (default: none, every pass starts from the images);
    ``eval_batch_size`` (default ``cfg``'s) only sets speed. With ``R = I`` the rotated
    network computes the original function, so its evaluation is not repeated.

    ``diagnostic_samples``: the diagnostics (the rotated network's test metrics before
    retraining, the train accuracy after it) on a fixed subset of that many images of their
    split, seeded by ``seed`` (None: the whole split; their image counts are returned). The
    result, the retrained network's test metrics, always uses every test image.

    Returns a flat dict: layer, layer_index (1-based depth, as in every summary table), width,
    arch, linear, retrain_epochs, lr,
    seed, ``{original,rotated,retrained}_{test_acc,test_loss}`` and ``retrained_train_acc``,
    plus ``rotation_identity`` (whether R == I) and the diagnostics' image counts
    ``rotated_test_images`` and ``retrained_train_images``.
    """
    site = rotation_site(model, layer)
    idx = site.index
    net = insert_rotation(model, layer, R)
    base = dict(cfg.to_dict() if isinstance(cfg, TrainConfig) else (cfg or {}))
    base.pop("epochs", None), base.pop("lr", None)
    tcfg = TrainConfig.from_dict(base, epochs=int(retrain_epochs), lr=float(lr))
    bs = int(eval_batch_size or tcfg.eval_batch_size)
    cache = cache if cache is not None else Prefix(0, data.x_train, data.x_test)
    if cache.start > idx:
        raise ValueError(f"the cached prefix ends at layer {cache.start}, above {layer}'s site (layer {idx})")
    above = Above(net, cache.start)
    Rn = np.asarray(R.cpu() if isinstance(R, torch.Tensor) else R, dtype=float)
    identity = bool(np.array_equal(Rn, np.eye(len(Rn))))

    # the diagnostics' subsets: one stream per split, the same images for every row of a network
    test_idx = subset_indices(len(data.y_test), diagnostic_samples, [int(seed), 0])
    train_idx = subset_indices(len(data.y_train), diagnostic_samples, [int(seed), 1])

    orig_loss, orig_acc = original if original is not None else evaluate(
        Above(model, cache.start), cache.x_test, data.y_test, bs)
    rot_loss, rot_acc = (orig_loss, orig_acc) if identity else evaluate(
        above, take(cache.x_test, test_idx), take(data.y_test, test_idx), bs)
    retrain(net, above, cache.x_train, data.y_train, tcfg, seed, site.frozen_k)
    ret_loss, ret_acc = evaluate(above, cache.x_test, data.y_test, bs)
    if not math.isfinite(ret_loss):
        raise FloatingPointError(f"non-finite test loss {ret_loss} after retraining")
    _, ret_train_acc = evaluate(above, take(cache.x_train, train_idx), take(data.y_train, train_idx), bs)
    return {
        "arch": model.arch, "linear": bool(model.options.get("linear", False)), "layer": layer,
        "layer_index": idx + 1, "width": site.units, "retrain_epochs": int(retrain_epochs),
        "lr": float(lr), "seed": int(seed), "rotation_identity": bool(np.allclose(Rn, np.eye(len(Rn)))),
        "original_test_acc": orig_acc, "original_test_loss": orig_loss,
        "rotated_test_acc": rot_acc, "rotated_test_loss": rot_loss,
        "retrained_test_acc": ret_acc, "retrained_test_loss": ret_loss,
        "retrained_train_acc": float(ret_train_acc),
        "rotated_test_images": len(data.y_test) if test_idx is None or identity else len(test_idx),
        "retrained_train_images": len(data.y_train) if train_idx is None else len(train_idx),
    }
