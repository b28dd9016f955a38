"""What each architecture is called and which layers it exposes, without importing torch.

The Snakefile and the config validator need layer names to plan the DAG; importing
torch for that would slow every dry run, so the names live here and
:mod:`convergent.models` checks that the built networks expose exactly these.

``width`` is always a positive integer whose meaning depends on the architecture:

* ``mlp``: hidden units of every hidden layer.
* ``cnn``: channels of the first conv block (VGG-style: doubled after every second block).
* ``resnet18``: channels of the first stage (64 is the standard CIFAR ResNet-18).
* ``wrn``: the widening factor k of WideResNet-depth-k (first stage has 16·k channels).

A *layer* is one extractable hidden representation: the post-activation output of a
dense layer, a conv block or a residual block. Freezing ``k`` layers freezes every
parameter (and BatchNorm statistic) that computes the first ``k`` of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ARCHS = ("mlp", "cnn", "resnet18", "wrn")

#: default per-architecture options; the config's ``models:`` section overrides them
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "mlp": {"depth": 3},
    "cnn": {"depth": 4, "batchnorm": True},
    "resnet18": {},
    "wrn": {"depth": 16},
}


def arch_options(arch: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults for ``arch`` updated with ``options``; rejects unknown architectures."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; allowed: {', '.join(ARCHS)}")
    merged = dict(ARCH_DEFAULTS[arch])
    merged.update(dict(options or {}))
    return merged


def wrn_blocks_per_stage(depth: int) -> int:
    """WideResNet-depth-k has (depth - 4) / 6 basic blocks per stage."""
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"WideResNet depth must be 6·N + 4 with N ≥ 1 (10, 16, 22, 28, ...), got {depth}")
    return (depth - 4) // 6


def layer_names(arch: str, options: Mapping[str, Any] | None = None) -> list[str]:
    """Extractable hidden layers of ``arch``, input to output."""
    opts = arch_options(arch, options)
    if arch == "mlp":
        return [f"fc{i + 1}" for i in range(int(opts["depth"]))]
    if arch == "cnn":
        return [f"conv{i + 1}" for i in range(int(opts["depth"]))]
    if arch == "resnet18":
        return ["stem"] + [f"layer{s}.{b}" for s in range(1, 5) for b in range(2)]
    n = wrn_blocks_per_stage(int(opts["depth"]))
    return ["stem"] + [f"block{s}.{b}" for s in range(1, 4) for b in range(n)]


def layer_slug(layer: str) -> str:
    """A file-name-safe form of a layer name (``layer1.0`` → ``layer1-0``)."""
    return layer.replace(".", "-")
