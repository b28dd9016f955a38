"""Brown et al.'s privileged-basis test: rotate a layer's pre-activation, retrain above it.

Protocol (the project's operationalisation, see SPEC paper 5)

1. Take a trained mlp/cnn and a layer ``ℓ``. Insert a fixed orthogonal ``R`` (d×d)
   between ``ℓ``'s linear map (+ BatchNorm) and its nonlinearity: the pre-activation
   h (b, d) — or (b, c, *spatial) with channels as units — becomes ``h R``
   (unit j ← Σ_i h_i R_ij). A rotation *after* the nonlinearity would be absorbed
   exactly by the next linear map, so it would test nothing.
2. Freeze layers ``1..ℓ`` (parameters, BatchNorm statistics, and R), retrain the layers
   above and the head from their trained weights for ``retrain_epochs`` with
   :func:`convergent.train.train`.
3. Report test accuracy/loss of the original, the rotated net before retraining and
   after. A privileged basis (ReLU) shows a gap after retraining that the controls do
   not: ``R = I`` (retraining alone) and the ``linear`` variant of the architecture,
   where the next layer can undo R exactly (W' = W Rᵀ).
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
from scipy.stats import special_ortho_group
from torch import nn

from convergent.data import DatasetSplits
from convergent.models import Block, ConvergentNet
from convergent.train import TrainConfig, evaluate, train


class Rotate(nn.Module):
    """``h ↦ h R`` on the unit axis (last axis of (b, d); axis 1 of (b, c, *spatial)).

    ``R`` is a buffer: saved with the state dict, never trained.
    """

    def __init__(self, R: torch.Tensor):
        super().__init__()
        if R.dim() != 2 or R.shape[0] != R.shape[1]:
            raise ValueError(f"R must be square, got {tuple(R.shape)}")
        self.register_buffer("R", R.detach().clone().float())

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.dim() == 2:
            return h @ self.R
        return torch.einsum("bc...,cd->bd...", h, self.R)


def random_rotation(d: int, seed: int) -> np.ndarray:
    """Haar-random rotation in SO(d) (d×d, float64, det +1); ``d = 1`` gives [[1]]."""
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
    """Number of units of ``layer`` (out features / out channels of its linear map)."""
    block = model.layer_module(layer)
    if not isinstance(block, Block):
        raise NotImplementedError(f"rotation test supports mlp/cnn Blocks, not {type(block).__name__}")
    return int(block.linear.weight.shape[0])


def insert_rotation(model: ConvergentNet, layer: str, R: np.ndarray | torch.Tensor) -> ConvergentNet:
    """A deep copy of ``model`` with ``layers[ℓ].act = Sequential(Rotate(R), act)``."""
    d = layer_width(model, layer)
    R = torch.as_tensor(np.asarray(R), dtype=torch.float32)
    if tuple(R.shape) != (d, d):
        raise ValueError(f"{layer} has {d} units; R is {tuple(R.shape)}")
    net = copy.deepcopy(model)
    block = net.layer_module(layer)
    block.act = nn.Sequential(Rotate(R), block.act)
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
    idx = model.layer_index(layer)
    net = insert_rotation(model, layer, R)
    base = dict(cfg.to_dict() if isinstance(cfg, TrainConfig) else (cfg or {}))
    base.pop("epochs", None), base.pop("lr", None)
    tcfg = TrainConfig.from_dict(base, epochs=int(retrain_epochs), lr=float(lr))

    def metrics(m: nn.Module) -> tuple[float, float]:
        return evaluate(m, data.x_test, data.y_test, tcfg.eval_batch_size)

    orig_loss, orig_acc = metrics(model)
    rot_loss, rot_acc = metrics(net)
    with tempfile.TemporaryDirectory() as tmp:
        res = train(net, data, tcfg, seed=seed, frozen_k=idx + 1,
                    log_path=Path(tmp) / "retrain.csv", log=lambda s: None)
    ret_loss, ret_acc = metrics(net)
    Rn = np.asarray(R, dtype=float)
    return {
        "arch": model.arch, "linear": bool(model.options.get("linear", False)), "layer": layer,
        "layer_index": idx + 1, "width": layer_width(model, layer), "retrain_epochs": int(retrain_epochs),
        "lr": float(lr), "seed": int(seed), "rotation_identity": bool(np.allclose(Rn, np.eye(len(Rn)))),
        "original_test_acc": orig_acc, "original_test_loss": orig_loss,
        "rotated_test_acc": rot_acc, "rotated_test_loss": rot_loss,
        "retrained_test_acc": ret_acc, "retrained_test_loss": ret_loss,
        "retrained_train_acc": float(res["train_acc"]),
    }
