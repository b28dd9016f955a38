"""REPAIR (Jordan et al. 2023): renormalise the interpolated network's channels.

Interpolating two networks shrinks the variance of hidden channels ("variance
collapse"). REPAIR corrects every *repair point* of θ(α): each channel's output h is
replaced by ``(h − μ_α) / σ_α · σ_t + μ_t`` with the target
``μ_t = (1−α) μ_A + α μ_B``, ``σ_t = (1−α) σ_A + α σ_B`` (the endpoints' statistics at the
same point) and μ_α, σ_α the statistics of θ(α) at that point *after* the corrections
upstream of it.

Operational choices (as in the authors' code, which wraps every conv in a
BatchNorm-like ``ResetLayer`` after fusing BatchNorm into the conv):

* Repair points (:func:`repair_points`): the pre-activation of every hidden linear/conv
  map — its BatchNorm's output when a BatchNorm follows it directly (mlp/cnn ``norm``,
  resnet18 ``bn1``/``bn2``/shortcut BN, wrn ``bn2``), else the map's own output (mlp/cnn
  without BN, the wrn stem, wrn ``conv2`` and shortcut convs, whose outputs are added
  to the residual stream). The classifier is not repaired.
* Statistics are per channel (conv: over images and positions), estimated on the
  training inputs as a BatchNorm's running statistics with ``momentum=None`` are
  (cumulative average of per-batch means and unbiased variances, batches of
  ``batch_size``; computed in float64): the endpoints with plain eval-mode passes,
  θ(α) in one calibration pass in which every correction normalises by its batch's
  own statistics (as BatchNorm in train mode, but with the unbiased variance, so that
  with a single batch the calibrated correction is exactly what it used), so each point
  sees its upstream points already corrected. σ = sqrt(var + 1e-5) (BatchNorm's eps).
* At α = 0 and α = 1 the target is the network's own statistics, so the correction is
  the identity by definition and is skipped: the endpoints are the endpoint networks
  exactly.
* The networks' own BatchNorms stay in eval mode with their (interpolated) running
  statistics; the correction makes them irrelevant up to its own estimate.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from convergent.nets.models import BasicBlock, Block, ConvergentNet, PreActBlock, is_batchnorm
from convergent.weights.evaluation import forward_batches

#: repair point (module path) → (mean, std) per channel, float64 (c,)
Stats = dict[str, tuple[torch.Tensor, torch.Tensor]]

_EPS = 1e-5


def repair_points(model: ConvergentNet) -> list[str]:
    """Module paths whose outputs REPAIR corrects, input to output (module docstring)."""
    points: list[str] = []
    for i, layer in enumerate(model.layers):
        p = f"layers.{i}"
        if isinstance(layer, Block):
            points.append(f"{p}.norm" if is_batchnorm(layer.norm) else f"{p}.linear")
        elif isinstance(layer, BasicBlock):
            points += [f"{p}.bn1", f"{p}.bn2"]
            if not isinstance(layer.shortcut, nn.Identity):
                points.append(f"{p}.shortcut.1")
        elif isinstance(layer, PreActBlock):
            points += [f"{p}.bn2", f"{p}.conv2"]
            if layer.shortcut is not None:
                points.append(f"{p}.shortcut")
        else:
            raise NotImplementedError(f"no REPAIR rule for {type(layer).__name__}")
    return points


class _ChannelStats:
    """Cumulative average over batches of each channel's batch mean and unbiased batch
    variance (what BatchNorm's running statistics hold with ``momentum=None``), float64."""

    def __init__(self) -> None:
        self.batches = 0
        self.mean: torch.Tensor | None = None
        self.var: torch.Tensor | None = None

    def update(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fold in batch ``h`` (b, c, *spatial) or (b, c); returns its (mean, var) (c,)."""
        dims = [0, *range(2, h.dim())]
        hd = h.double()
        m, v = hd.mean(dims), hd.var(dims, unbiased=True)
        self.batches += 1
        if self.mean is None:
            self.mean, self.var = m.clone(), v.clone()
        else:
            self.mean += (m - self.mean) / self.batches
            self.var += (v - self.var) / self.batches
        return m, v


def _channel_shape(h: torch.Tensor) -> tuple[int, ...]:
    """Broadcast shape of a per-channel vector against ``h`` (channels on axis 1)."""
    return (1, -1) + (1,) * (h.dim() - 2)


def _run(model: ConvergentNet, x: torch.Tensor, batch_size: int) -> None:
    """Forward passes over ``x`` in eval mode (the train/eval mode is restored)."""
    was = model.training
    model.eval()
    try:
        forward_batches(model, x, batch_size, single_first=True)
    finally:
        model.train(was)


@torch.no_grad()
def channel_stats(model: ConvergentNet, x: torch.Tensor, batch_size: int = 1024,
                  points: list[str] | None = None) -> Stats:
    """Per repair point, each channel's (mean, std) of ``model`` in eval mode on ``x``."""
    points = repair_points(model) if points is None else points
    acc = {p: _ChannelStats() for p in points}

    def make_hook(path: str):
        def hook(_m, _i, out):
            acc[path].update(out)  # returns None: the output is unchanged
        return hook

    handles = [model.get_submodule(p).register_forward_hook(make_hook(p)) for p in points]
    try:
        _run(model, x, batch_size)
    finally:
        for h in handles:
            h.remove()
    return {p: (a.mean, (a.var + _EPS).sqrt()) for p, a in acc.items()}


def interpolate_stats(stats_a: Stats, stats_b: Stats, alpha: float) -> Stats:
    """Target statistics ((1−α)μ_A + αμ_B, (1−α)σ_A + ασ_B) per point."""
    return {p: (torch.lerp(stats_a[p][0], stats_b[p][0], alpha), torch.lerp(stats_a[p][1], stats_b[p][1], alpha))
            for p in stats_a}


@contextmanager
def repaired(model: ConvergentNet, targets: Stats, x: torch.Tensor, batch_size: int = 1024) -> Iterator[None]:
    """Inside the block, ``model`` computes its REPAIRed function (hooks, removed on exit).

    Calibrates first with one pass over ``x`` in which each correction normalises by its
    batch's statistics (module docstring); afterwards it uses their cumulative average.
    """
    acc = {p: _ChannelStats() for p in targets}
    calibrating = True

    def make_hook(path: str):
        mean_t, std_t = targets[path]

        def hook(_m, _i, out):
            m, v = acc[path].update(out) if calibrating else (acc[path].mean, acc[path].var)
            shape = _channel_shape(out)
            scale = (std_t / (v + _EPS).sqrt()).view(shape)
            return ((out.double() - m.view(shape)) * scale + mean_t.view(shape)).to(out.dtype)
        return hook

    handles = [model.get_submodule(p).register_forward_hook(make_hook(p)) for p in targets]
    try:
        with torch.no_grad():
            _run(model, x, batch_size)
        calibrating = False
        yield
    finally:
        for h in handles:
            h.remove()


def endpoint_stats(model: ConvergentNet, state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor],
                   x: torch.Tensor, batch_size: int = 1024) -> tuple[Stats, Stats]:
    """:func:`channel_stats` of the two endpoint networks (``model`` is reloaded)."""
    model.load_state_dict(state_a)
    sa = channel_stats(model, x, batch_size)
    model.load_state_dict(state_b)
    sb = channel_stats(model, x, batch_size)
    return sa, sb
