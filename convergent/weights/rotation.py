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
   trained weights for ``retrain_epochs`` with :func:`convergent.train.train`.
3. Report test accuracy/loss of the original, the rotated net before retraining and
   after. A privileged basis (ReLU) shows a gap after retraining that the controls do
   not: ``R = I`` (retraining alone) and the ``linear`` variant of the architecture,
   where the consumers can undo R exactly (each consumer's weight W on R's unit axis
   becomes W R: (h R)(W R)ᵀ = h Wᵀ).

Sites (:func:`rotation_site`; :data:`convergent.archspec.ROTATION_SITES` in words)

* mlp ``fc{i}`` / cnn ``conv{i}`` / resnet18 ``stem`` (a :class:`~convergent.models.Block`):
  between ``norm`` and ``act``; the whole layer is below R (``frozen_k = ℓ``).
  Consumers: the next layer's linear map (after its pool, an average pool in the
  linear control) or the head's Linear (after global average pooling, which commutes).
  The resnet18 stem feeds the residual stream of stage 1, whose first block
  (``layer1.0``) has an identity shortcut that nothing could train to undo R; the test
  replaces it by a trainable 1×1 conv initialised to the identity (for every R, the
  ``R = I`` control and ReLU and linear nets alike, so all compare the same network),
  which with ``layer1.0.conv1`` is then the complete set of consumers.
* resnet18 ``layer{s}.{b}`` (:class:`~convergent.models.BasicBlock`): inside the block,
  between ``bn1`` and the inner ReLU; below R: the earlier layers plus ``conv1``, ``bn1``
  (``frozen_k = ℓ - 1`` and those two *pinned*); consumer: ``conv2`` alone.
* wrn ``block{s}.{b}`` (:class:`~convergent.models.PreActBlock`): inside the block,
  between ``bn2`` and its ReLU; below R: the earlier layers plus ``bn1``, ``conv1``,
  ``bn2``; consumer: ``conv2`` alone.
* wrn ``stem``: refused (:func:`convergent.archspec.rotation_refusals` says why).
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg
import torch
from torch import nn

from dataclasses import dataclass

from convergent import archspec
from convergent.data import DatasetSplits
from convergent.models import BasicBlock, Block, ConvergentNet, PreActBlock
from convergent.train import TrainConfig, evaluate, train


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
        return torch.einsum("bc...,cd->bd...", h, R)


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


def rotation_test(model: ConvergentNet, data: DatasetSplits, layer: str, R: np.ndarray | torch.Tensor,
                  retrain_epochs: int, lr: float, seed: int,
                  cfg: TrainConfig | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Rotate ``layer``'s pre-activation by ``R``, retrain everything above it, report accuracy.

    ``model`` is not modified. ``cfg`` sets the other retraining options (defaults of
    :class:`TrainConfig`: SGD momentum 0.9, cosine schedule, weight decay 5e-4, batch
    64); ``epochs`` and ``lr`` always come from the arguments. ``seed`` drives the
    batch order of retraining.

    Returns a flat dict: layer, layer_index (1-based depth, as in every summary table), width,
    arch, linear, retrain_epochs, lr,
    seed, ``{original,rotated,retrained}_{test_acc,test_loss}`` and ``retrained_train_acc``,
    plus ``rotation_identity`` (whether R == I).
    """
    site = rotation_site(model, layer)
    idx = site.index
    net = insert_rotation(model, layer, R)
    base = dict(cfg.to_dict() if isinstance(cfg, TrainConfig) else (cfg or {}))
    base.pop("epochs", None), base.pop("lr", None)
    tcfg = TrainConfig.from_dict(base, epochs=int(retrain_epochs), lr=float(lr))

    def metrics(m: nn.Module) -> tuple[float, float]:
        return evaluate(m, data.x_test, data.y_test, tcfg.eval_batch_size)

    orig_loss, orig_acc = metrics(model)
    rot_loss, rot_acc = metrics(net)
    with tempfile.TemporaryDirectory() as tmp:
        res = train(net, data, tcfg, seed=seed, frozen_k=site.frozen_k,
                    log_path=Path(tmp) / "retrain.csv", log=lambda s: None)
    ret_loss, ret_acc = metrics(net)
    Rn = np.asarray(R, dtype=float)
    return {
        "arch": model.arch, "linear": bool(model.options.get("linear", False)), "layer": layer,
        "layer_index": idx + 1, "width": site.units, "retrain_epochs": int(retrain_epochs),
        "lr": float(lr), "seed": int(seed), "rotation_identity": bool(np.allclose(Rn, np.eye(len(Rn)))),
        "original_test_acc": orig_acc, "original_test_loss": orig_loss,
        "rotated_test_acc": rot_acc, "rotated_test_loss": rot_loss,
        "retrained_test_acc": ret_acc, "retrained_test_loss": ret_loss,
        "retrained_train_acc": float(res["train_acc"]),
    }
