"""Function-preserving permutations of hidden units, and two ways to find them.

Conventions

* A permutation of layer ``L`` is an int64 array ``perm`` of length ``d_L`` (its units:
  neurons of a dense layer, channels of a conv block) meaning "unit ``i`` of the
  permuted network is unit ``perm[i]`` of the original". Applying it gathers
  ``W[perm]`` along the unit axis of every tensor that carries those units.
* Matching B onto A returns ``perms`` such that ``apply_permutation(state_b, model,
  perms)`` puts B's unit ``perm[i]`` in position ``i``, the one it matched in A.
* A *permutation spec* (:func:`permutation_spec`) lists, per layer, every
  ``(state_dict key, axis)`` its permutation acts on: the layer's own linear/conv
  out-channels (weight axis 0, bias), its BatchNorm (weight, bias, running mean and
  variance), and the next layer's (or the head's) input axis 1. Everything else —
  the input axis of the first layer, the classifier's outputs, ``num_batches_tracked``
  — is never permuted, which is why the network's function is unchanged.

Only ``mlp`` and ``cnn`` (with or without BatchNorm, ReLU or ``linear``) are supported.
Residual networks need one permutation shared along each residual stream; that is not
implemented and :func:`permutation_spec` raises :class:`NotImplementedError` for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from convergent.models import Block, ConvergentNet, record_layers

#: layer name → [(state_dict key, axis)] that the layer's permutation acts on
PermSpec = dict[str, list[tuple[str, int]]]
Perms = dict[str, np.ndarray]

_BN_BUFFERS = ("running_mean", "running_var")


def permutation_spec(model: ConvergentNet) -> PermSpec:
    """Which tensors and axes each hidden layer's permutation acts on (mlp / cnn only).

    Raises :class:`NotImplementedError` for residual architectures: their blocks add
    the input to the output, so one permutation must be shared along a whole residual
    stream (Ainsworth et al. 2023) — not implemented here.
    """
    if model.arch not in ("mlp", "cnn") or not all(isinstance(m, Block) for m in model.layers):
        raise NotImplementedError(
            f"permutations are implemented for mlp and cnn only, not {model.arch!r}: residual "
            "networks need one permutation shared along each residual stream, which this module "
            "does not build")
    keys = set(model.state_dict())
    spec: PermSpec = {}
    for i, (name, block) in enumerate(zip(model.layer_names, model.layers)):
        pre = f"layers.{i}."
        entries = [(pre + "linear.weight", 0)]
        if pre + "linear.bias" in keys:
            entries.append((pre + "linear.bias", 0))
        if isinstance(block.norm, nn.modules.batchnorm._BatchNorm):
            for t in ("weight", "bias", *_BN_BUFFERS):
                if pre + f"norm.{t}" in keys:
                    entries.append((pre + f"norm.{t}", 0))
        # the consumer of this layer's units: next layer's linear map, or the classifier
        nxt = f"layers.{i + 1}.linear.weight" if i + 1 < len(model.layers) else "head.linear.weight"
        entries.append((nxt, 1))
        spec[name] = entries
    return spec


def _axes_of(spec: PermSpec) -> dict[str, dict[int, str]]:
    """Inverse view of a spec: key → {axis: layer name}."""
    out: dict[str, dict[int, str]] = {}
    for name, entries in spec.items():
        for key, axis in entries:
            out.setdefault(key, {})[axis] = name
    return out


def _validate(perms: Mapping[str, np.ndarray], spec: PermSpec, state: Mapping[str, torch.Tensor]) -> None:
    unknown = set(perms) - set(spec)
    if unknown:
        raise KeyError(f"permutations for unknown layers {sorted(unknown)}; layers: {list(spec)}")
    for name, perm in perms.items():
        key, axis = spec[name][0]
        d = state[key].shape[axis]
        p = np.asarray(perm)
        if p.shape != (d,) or not np.array_equal(np.sort(p), np.arange(d)):
            raise ValueError(f"perm of {name} is not a permutation of range({d})")


def permute_tensor(t: torch.Tensor, axes: Mapping[int, np.ndarray]) -> torch.Tensor:
    """``t`` gathered along each axis in ``axes`` (axis → perm): ``t[..., perm, ...]``."""
    for axis, perm in axes.items():
        t = t.index_select(axis, torch.as_tensor(np.asarray(perm), dtype=torch.long, device=t.device))
    return t


def apply_permutation(state_dict: Mapping[str, torch.Tensor], model: ConvergentNet,
                      perms: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """A new state dict whose hidden units are permuted by ``perms`` (layer → index array).

    Layers absent from ``perms`` keep their order. The permuted network computes the
    same function as the original (up to float rounding in summation order).
    """
    spec = permutation_spec(model)
    _validate(perms, spec, state_dict)
    axes = _axes_of({n: e for n, e in spec.items() if n in perms})
    out: dict[str, torch.Tensor] = {}
    for key, t in state_dict.items():
        if key in axes:
            out[key] = permute_tensor(t, {ax: perms[name] for ax, name in axes[key].items()})
        else:
            out[key] = t.clone()
    return out


def invert_permutation(perm: np.ndarray) -> np.ndarray:
    """``inv`` with ``inv[perm[i]] = i``."""
    perm = np.asarray(perm)
    inv = np.empty_like(perm)
    inv[perm] = np.arange(len(perm))
    return inv


def random_permutations(model: ConvergentNet, seed: int) -> Perms:
    """One uniformly random permutation per hidden layer (for tests and null models)."""
    rng = np.random.default_rng(seed)
    spec = permutation_spec(model)
    sd = model.state_dict()
    return {name: rng.permutation(sd[entries[0][0]].shape[0]) for name, entries in spec.items()}


# --- activation matching ------------------------------------------------------------------

def _units_as_columns(h: torch.Tensor) -> torch.Tensor:
    """(b, d) → (b, d); conv (b, c, *spatial) → (b·positions, c): positions are samples."""
    if h.dim() == 2:
        return h
    return h.movedim(1, -1).reshape(-1, h.shape[1])


def correlation_matrix(sums: dict[str, torch.Tensor], n: int, tol: float = 1e-12) -> np.ndarray:
    """Pearson correlation (d_a, d_b) from float64 moments; dead units (variance ≤ tol) → 0."""
    mean_a, mean_b = sums["a"] / n, sums["b"] / n
    cov = sums["ab"] / n - torch.outer(mean_a, mean_b)
    var_a = (sums["aa"] / n - mean_a ** 2).clamp_min(0)
    var_b = (sums["bb"] / n - mean_b ** 2).clamp_min(0)
    alive_a, alive_b = var_a > tol, var_b > tol
    std_a = torch.where(alive_a, var_a.sqrt(), torch.ones_like(var_a))
    std_b = torch.where(alive_b, var_b.sqrt(), torch.ones_like(var_b))
    corr = cov / torch.outer(std_a, std_b)
    corr = corr * torch.outer(alive_a, alive_b)  # dead units: correlation 0, never NaN
    return corr.numpy()


@torch.no_grad()
def layer_correlations(model_a: ConvergentNet, model_b: ConvergentNet, x: torch.Tensor,
                       layers: Sequence[str] | None = None, batch_size: int = 1024) -> dict[str, np.ndarray]:
    """Per layer, the (d, d) Pearson correlation of A's and B's post-activation units on ``x``.

    One eval-mode pass over ``x`` per network, accumulating float64 moments batch by
    batch (memory O(d²), independent of n).
    """
    layers = list(model_a.layer_names if layers is None else layers)
    was = model_a.training, model_b.training
    model_a.eval(), model_b.eval()
    acc: dict[str, dict[str, torch.Tensor]] = {}
    n: dict[str, int] = {}
    try:
        with record_layers(model_a, layers) as out_a, record_layers(model_b, layers) as out_b:
            for start in range(0, len(x), batch_size):
                xb = x[start:start + batch_size]
                model_a(xb), model_b(xb)
                for name in layers:
                    a = _units_as_columns(out_a[name]).double()
                    b = _units_as_columns(out_b[name]).double()
                    s = acc.setdefault(name, {"a": 0, "b": 0, "aa": 0, "bb": 0, "ab": 0})
                    s["a"] = s["a"] + a.sum(0)
                    s["b"] = s["b"] + b.sum(0)
                    s["aa"] = s["aa"] + (a * a).sum(0)
                    s["bb"] = s["bb"] + (b * b).sum(0)
                    s["ab"] = s["ab"] + a.T @ b
                    n[name] = n.get(name, 0) + a.shape[0]
    finally:
        model_a.train(was[0]), model_b.train(was[1])
    return {name: correlation_matrix(acc[name], n[name]) for name in layers}


def activation_matching(model_a: ConvergentNet, model_b: ConvergentNet, x: torch.Tensor,
                        batch_size: int = 1024) -> Perms:
    """Permutations of B's units maximising the summed correlation with A's, layer by layer.

    ``x``: inputs (n, *input_shape). Each layer is an independent Hungarian assignment
    (``linear_sum_assignment``, maximise) on the correlation of post-activation outputs
    of the *unpermuted* networks; since permuting layer ℓ−1 does not change layer ℓ's
    units, the per-layer problems are independent. Dead units have correlation 0 with
    everything, so their assignment is arbitrary (it does not matter for the function).
    """
    permutation_spec(model_a)  # fail early for unsupported architectures
    corrs = layer_correlations(model_a, model_b, x, batch_size=batch_size)
    perms: Perms = {}
    for name, c in corrs.items():
        rows, cols = linear_sum_assignment(c, maximize=True)
        perms[name] = cols[np.argsort(rows)].astype(np.int64)
    return perms


# --- weight matching ----------------------------------------------------------------------

def _matching_entries(spec: PermSpec, state: Mapping[str, torch.Tensor]) -> PermSpec:
    """Spec without BN running statistics: they are data statistics, not weights, and their
    scale (variances) would swamp the weight terms of the objective."""
    return {n: [(k, a) for k, a in e if not k.endswith(_BN_BUFFERS) and state[k].is_floating_point()]
            for n, e in spec.items()}


def weight_matching(state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor],
                    model: ConvergentNet, max_sweeps: int = 100, seed: int = 0,
                    tol: float = 1e-9) -> Perms:
    """Ainsworth et al. (2023) weight matching of B onto A.

    Maximises Σ_tensors ⟨W_A, P(W_B)⟩ by coordinate descent: each sweep visits the
    layers in a random order (``numpy`` generator seeded by ``seed``) and solves a
    linear assignment for that layer's permutation with all others fixed. The cost for
    layer ℓ is C = Σ_{(key, axis)} W_A[key]ₐ · (W_B[key] with the *other* layers'
    permutations applied)ₐᵀ, where ``ₐ`` moves the unit axis first and flattens the
    rest — it includes the incoming weights (rows), biases and BN affine parameters
    and the outgoing weights (columns of the next layer). Stops after a sweep in which
    no layer improves by more than ``tol`` (relative), or after ``max_sweeps``.
    Computed in float64 on CPU.
    """
    spec = _matching_entries(permutation_spec(model), state_a)
    axes = _axes_of(spec)
    wa = {k: state_a[k].detach().double().cpu() for k in axes}
    wb = {k: state_b[k].detach().double().cpu() for k in axes}
    perms: Perms = {n: np.arange(state_a[e[0][0]].shape[e[0][1]]) for n, e in spec.items()}
    rng = np.random.default_rng(seed)
    names = list(spec)
    for _ in range(max_sweeps):
        improved = False
        for idx in rng.permutation(len(names)):
            name = names[idx]
            d = len(perms[name])
            cost = torch.zeros(d, d, dtype=torch.float64)
            for key, axis in spec[name]:
                others = {ax: perms[n] for ax, n in axes[key].items() if n != name}
                b = permute_tensor(wb[key], others)
                a = wa[key].movedim(axis, 0).reshape(d, -1)
                cost += a @ b.movedim(axis, 0).reshape(d, -1).T
            c = cost.numpy()
            rows, cols = linear_sum_assignment(c, maximize=True)
            new = cols[np.argsort(rows)]
            old_val, new_val = c[np.arange(d), perms[name]].sum(), c[np.arange(d), new].sum()
            if new_val > old_val + tol * max(abs(old_val), 1.0):
                perms[name] = new
                improved = True
        if not improved:
            break
    return {n: p.astype(np.int64) for n, p in perms.items()}
