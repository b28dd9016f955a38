"""Forward passes for the weight-space experiments: per-image results, batch size, subsets.

LMC and the rotation test are made of eval-mode forward passes over whole splits, so their
cost is the number of images pushed through a network times the cost of one image. Two
things set the second factor without changing any number beyond rounding:

* the batch size: on a CPU a batch whose largest activation outgrows the caches is slower per
  image (WRN-10-4 on 32×32 images, one thread: 10.2 s per 1,000 images in batches of 1,024,
  4.6 s in batches of 32), so :func:`auto_batch_size` picks the largest power of two whose
  largest activation stays under a budget; on an accelerator it keeps big batches;
* per-image results (:func:`per_image`), so a mean and its standard error come from the same
  pass and a barrier can carry the standard error of its images.

The first factor is cut by evaluating a fixed, seeded subset of a split (:func:`subset_indices`),
the same images for every network of a job, so differences between networks are paired.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: largest activation of one CPU batch (bytes) that :func:`auto_batch_size` aims for
CPU_BATCH_BUDGET = 8 << 20


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (every tensor of a job follows it)."""
    return next(model.parameters()).device


def forward_batches(model: nn.Module, x: torch.Tensor, batch_size: int, *, single_first: bool = False) -> None:
    """Run ``model`` on ``x`` in consecutive batches of ``batch_size`` rows, each moved to the
    model's device, for what the pass leaves behind (BatchNorm running statistics, forward hooks'
    sums); the outputs are dropped. The caller sets the train/eval mode and ``no_grad``.

    A batch of one row ends the pass: a batch of one has no variance (BatchNorm in train mode
    refuses it, and it would weigh one image like a whole batch in a per-batch average). With
    ``single_first`` a first batch of one row still runs (REPAIR's statistics of a one-image
    input, in eval mode)."""
    device = model_device(model)
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        if len(xb) < 2 and not (single_first and start == 0):
            break
        model(xb.to(device))


@torch.no_grad()
def largest_activation_bytes(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Bytes of the largest output of any leaf module for one input of ``input_shape``
    (no batch axis), measured with one eval-mode forward pass of a zero image."""
    largest = 0

    def hook(_m, _i, out):
        nonlocal largest
        if isinstance(out, torch.Tensor):
            largest = max(largest, out.numel() * out.element_size())

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was = model.training
    model.eval()
    try:
        ref = next(model.parameters())
        model(torch.zeros((1, *input_shape), dtype=ref.dtype, device=ref.device))
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    return largest


def auto_batch_size(model: nn.Module, input_shape: tuple[int, ...], budget: int = CPU_BATCH_BUDGET,
                    low: int = 16, high: int = 1024) -> int:
    """Eval batch size for ``model``: ``high`` off the CPU; on the CPU the largest power of two
    in [``low``, ``high``] whose largest activation (:func:`largest_activation_bytes` × batch)
    fits in ``budget`` bytes. Only speed depends on it: eval-mode outputs are per image."""
    if model_device(model).type != "cpu":
        return high
    per_image_bytes = max(largest_activation_bytes(model, tuple(input_shape)), 1)
    size = 1 << max(int(np.floor(np.log2(max(budget // per_image_bytes, 1)))), 0)
    return int(min(max(size, low), high))


def resolve_batch_size(value: int | str | None, model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """A configured eval batch size: a positive int as is, ``"auto"``/None → :func:`auto_batch_size`."""
    if value is None or value == "auto":
        return auto_batch_size(model, input_shape)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"eval batch size must be a positive integer or 'auto', got {value!r}")
    return value


@torch.no_grad()
def per_image(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode cross-entropy (float64, (n,)) and correctness (bool, (n,)) of every image.

    Batches are moved to the model's device; the train/eval mode is restored afterwards.
    Their means are what :func:`convergent.nets.train.evaluate` returns, up to summation order.
    """
    device = model_device(model)
    was = model.training
    model.eval()
    losses, correct = [], []
    try:
        for start in range(0, len(y), batch_size):
            xb = x[start:start + batch_size].to(device, non_blocking=True)
            yb = y[start:start + batch_size].to(device, non_blocking=True)
            logits = model(xb)
            losses.append(F.cross_entropy(logits, yb, reduction="none").double().cpu())
            correct.append((logits.argmax(1) == yb).cpu())
    finally:
        model.train(was)
    if not losses:
        return np.zeros(0), np.zeros(0, dtype=bool)
    return torch.cat(losses).numpy(), torch.cat(correct).numpy()


def subset_indices(n: int, size: int | None, seed: int | Sequence[int]) -> np.ndarray | None:
    """Sorted indices of a fixed random subset of ``size`` of ``n`` rows (``seed``: an int or a
    sequence of ints, as ``numpy.random.default_rng`` takes);
    None when ``size`` is None or not smaller than ``n`` (the whole split is used)."""
    if size is None or size >= n:
        return None
    if size < 2:
        raise ValueError(f"a subset needs at least 2 images, got {size}")
    return np.sort(np.random.default_rng(seed).choice(n, size=int(size), replace=False))


def take(x: torch.Tensor, idx: np.ndarray | None) -> torch.Tensor:
    """``x[idx]`` along the first axis (``x`` itself when ``idx`` is None)."""
    return x if idx is None else x[torch.as_tensor(idx, dtype=torch.long)]
