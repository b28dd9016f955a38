"""What each architecture is called and which layers it exposes, without importing torch.

The Snakefile and the config validator need layer names to plan the DAG; importing
torch for that would slow every dry run, so the names live here and
:mod:`convergent.nets.models` checks that the built networks expose exactly these.

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

#: option keys each architecture accepts (``linear``: the rotation test's linear control, every arch)
ARCH_OPTIONS: dict[str, tuple[str, ...]] = {
    "mlp": ("depth", "linear"),
    "cnn": ("depth", "batchnorm", "linear"),
    "resnet18": ("linear",),
    "wrn": ("depth", "linear"),
}


#: keys of ``sweep.model.<import path>`` that the pipeline reads and the factory never sees:
#: ``layers`` (the module names to compare, in any order) and ``container`` (a module whose
#: children are the layers when ``layers`` is not given; default: the top level)
IMPORTED_KEYS = ("layers", "container")


def is_imported(arch: str) -> bool:
    """Whether ``arch`` is an import path ``package.module:factory`` rather than a built-in."""
    from convergent.nets.registry import is_import_path

    return arch not in ARCHS and is_import_path(arch)


def factory_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options an imported architecture's factory gets: ``sweep.model.<arch>`` less
    :data:`IMPORTED_KEYS`."""
    return {k: v for k, v in options.items() if k not in IMPORTED_KEYS}


def arch_options(arch: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults for ``arch`` updated with ``options``; rejects unknown architectures and options.

    An imported architecture (import path) takes any options (its factory's keyword arguments)
    besides :data:`IMPORTED_KEYS`, whose types are checked here."""
    if is_imported(arch):
        opts = dict(options or {})
        layers, container = opts.get("layers"), opts.get("container")
        if layers is not None and (isinstance(layers, str) or not all(isinstance(n, str) for n in layers)
                                   or not layers):
            raise ValueError(f"layers must be a non-empty list of module names, got {layers!r}")
        if container is not None and not isinstance(container, str):
            raise ValueError(f"container must be a module name, got {container!r}")
        return opts
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; allowed: {', '.join(ARCHS)} "
                         f"or an import path package.module:factory")
    unknown = sorted(set(options or {}) - set(ARCH_OPTIONS[arch]))
    if unknown:
        raise ValueError(f"unknown {arch} options {unknown}; allowed: {sorted(ARCH_OPTIONS[arch])}")
    merged = dict(ARCH_DEFAULTS[arch])
    merged.update(dict(options or {}))
    return merged


def wrn_blocks_per_stage(depth: int) -> int:
    """WideResNet-depth-k has (depth - 4) / 6 basic blocks per stage."""
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"WideResNet depth must be 6·N + 4 with N ≥ 1 (10, 16, 22, 28, ...), got {depth}")
    return (depth - 4) // 6


def layer_names(arch: str, options: Mapping[str, Any] | None = None) -> list[str]:
    """Extractable hidden layers of ``arch``, input to output.

    An imported architecture's layers depend on the network the factory builds, hence on the
    data's shape: :func:`convergent.nets.models.probe` gives them."""
    if is_imported(arch):
        raise ValueError(f"{arch}: the layers of an imported architecture come from building it "
                         f"(convergent.nets.models.probe), not from its name")
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


# --- the rotation test's sites (Brown et al.; convergent.weights.rotation inserts R) ----------

#: where R sits for each kind of layer, in words (README and error messages)
ROTATION_SITES: dict[str, str] = {
    "mlp": "fc{i}: between the Linear map and its ReLU; consumed by the next Linear (or the head)",
    "cnn": "conv{i}: between the conv (+ BatchNorm) and its ReLU; consumed by the next conv, after the "
           "pool that opens it (average pool in the linear control), or by the head after global average pooling",
    "resnet18": "stem: between the stem's BatchNorm and ReLU; consumed by layer1.0's conv1 and its shortcut, "
                "which the test turns into a trainable 1x1 conv initialised to the identity. "
                "layer{s}.{b}: inside the BasicBlock, between bn1 and the inner ReLU; consumed only by conv2",
    "wrn": "block{s}.{b}: inside the pre-activation block, between bn2 and its ReLU; consumed only by conv2. "
           "stem: not rotatable",
}

_WRN_STEM_REFUSAL = (
    "wrn's stem is a bare 3x3 conv with no nonlinearity of its own: its output is the residual stream, "
    "read by block1.0's BatchNorm (per channel, so R^-1 cannot be folded into it) and by the identity "
    "skip of every stage-1 block, so neither a 'pre-activation' to rotate nor a linear consumer that could "
    "undo R exists; the first rotatable site is block1.0")


#: why an imported architecture gets no rotation test (planning says it before any job)
IMPORTED_ROTATION_REFUSAL = (
    "an imported architecture declares no rotation site (a pre-activation whose only consumers "
    "are linear maps that can absorb R^-1, and a linear control of the same network), so the "
    "rotation test cannot run on it")


def rotation_refusals(arch: str, options: Mapping[str, Any] | None = None) -> dict[str, str]:
    """``{layer: reason}`` for the layers of ``arch`` that have no rotation site."""
    if is_imported(arch):
        raise ValueError(f"rotation: {arch}: {IMPORTED_ROTATION_REFUSAL}")
    layer_names(arch, options)  # validates arch and options
    return {"stem": _WRN_STEM_REFUSAL} if arch == "wrn" else {}


def rotatable_layers(arch: str, options: Mapping[str, Any] | None = None) -> list[str]:
    """The layers of ``arch`` that have a rotation site, input to output."""
    refused = rotation_refusals(arch, options)
    return [name for name in layer_names(arch, options) if name not in refused]


def rotation_layers(arch: str, options: Mapping[str, Any] | None, spec: Any) -> list[str]:
    """The layers the rotation test runs on for ``arch``, from the config's ``rotation.layers``.

    ``spec`` is ``"all"`` (every rotatable layer), a list of layer names (each must be a
    rotatable layer of *every* architecture of the sweep), or a mapping ``{arch: "all" | [names]}``
    (an architecture absent from the mapping gets ``"all"``). Raises ``ValueError`` naming the
    architecture, the layer and the allowed rotatable layers (and why a refused layer is refused).
    Returned in depth order.
    """
    if isinstance(spec, Mapping):
        spec = spec.get(arch, "all")
    if not isinstance(spec, str) and not list(spec):
        return []   # {arch: []}: this architecture is left out of the test
    allowed = rotatable_layers(arch, options)
    if spec == "all":
        return allowed
    names = list(spec)
    refused = rotation_refusals(arch, options)
    all_layers = layer_names(arch, options)
    for name in names:
        if name in refused:
            raise ValueError(f"rotation.layers: {arch} layer {name!r} is not rotatable ({refused[name]}); "
                             f"allowed for {arch}: {', '.join(allowed)}")
        if name not in all_layers:
            raise ValueError(f"rotation.layers: {arch} has no layer {name!r}; "
                             f"allowed for {arch}: {', '.join(allowed)}")
    return [name for name in allowed if name in names]
