"""The four architectures as one sequential container, :class:`ConvergentNet`.

A network is ``layers`` (an ``nn.ModuleList``, one module per named layer of
:func:`convergent.nets.archspec.layer_names`) followed by ``head`` (pooling + linear
classifier). Layer module ``i`` maps the output of layer ``i-1`` (or the input) to the
representation of layer ``i``, so

* the representation of a layer is the *output* of its module (forward hooks go there);
* the parameters and buffers computing the first ``k`` layers are exactly those of
  ``layers[:k]`` — freezing, copying and permuting work on that prefix.

Per architecture (``width`` as in :mod:`convergent.nets.archspec`):

* ``mlp``: flatten → ``depth`` × [Linear(width) → ReLU] → Linear head. Layer ``fc{i}``
  is a :class:`Block` (``pre`` = Flatten for the first, ``linear``, ``norm`` = Identity,
  ``act``).
* ``cnn``: ``depth`` × [Conv 3 → BatchNorm (option) → ReLU]; channels ``width·2^(i//2)``
  for block ``i`` (0-based); a 2×2 max-pool (``ceil_mode``, so size-1 maps survive) at
  the *start* of every block after the second, fourth, … — i.e. after every second
  block, placed so that a layer's output is the un-pooled post-ReLU map. Head: global
  average pool → Linear. 1-D inputs (c, l) use Conv1d, 2-D inputs (c, h, w) Conv2d.
* ``resnet18``: CIFAR ResNet-18 (He et al. 2016): 3×3 stem Conv-BN-ReLU with ``width``
  channels (``stem``), then 4 stages × 2 post-activation BasicBlocks with
  ``width·(1, 2, 4, 8)`` channels, stride 2 at the start of stages 2-4 (``layer{s}.{b}``).
  Each block's output is post-ReLU (after the residual sum).
* ``wrn``: WideResNet-depth-k (Zagoruyko & Komodakis 2016), k = ``width``: 3×3 stem
  conv with 16 channels (no BN/ReLU: the pre-activation blocks apply them), 3 stages
  of (depth-4)/6 pre-activation blocks with 16k, 32k, 64k channels, then BN-ReLU
  (part of the head) → pool → Linear. A pre-activation block outputs the residual
  stream ``x + f(x)``, which is therefore the extracted representation of ``stem`` and
  ``block{s}.{b}`` (not post-ReLU; the non-negativity some measures assume does not hold).

Option ``linear=True`` (every architecture) is the rotation test's linear control: every
ReLU becomes the identity (the wrn head's BN-ReLU included) and the cnn's max-pool becomes an
average pool of the same window, so that the whole network commutes with a channel rotation
wherever one is inserted (a max-pool does not: max over positions of a rotated map is not
the rotated max). BatchNorm stays: in eval mode it is a per-channel affine map.

Rotation sites (Brown et al., see :mod:`convergent.weights.rotation`): in mlp/cnn and the
resnet18 stem (each a ``Block``) a layer's pre-activation is the input of ``layers[i].act``;
in ``BasicBlock`` and ``PreActBlock``
the block's *inner* pre-activation is the output of the ``mid`` placeholder (an
``nn.Identity`` between the inner BatchNorm and ReLU, consumed only by ``conv2``).
Modules marked ``pinned = True`` (set by the rotation test on the modules that compute
R's input inside a block) stay frozen and in eval mode like the frozen prefix.

Initialisation: He-normal (fan-in for mlp/cnn with the activation's gain, fan-out for
ResNets as in torchvision), zero biases, BatchNorm weight 1 / bias 0, and PyTorch's
default for the classifier. Seed torch's global generator before :func:`build_model`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from convergent.nets import archspec

#: option keys each architecture accepts (archspec.ARCH_OPTIONS; defaults in archspec.ARCH_DEFAULTS)
ALLOWED_OPTIONS: dict[str, set[str]] = {arch: set(keys) for arch, keys in archspec.ARCH_OPTIONS.items()}


# --- building blocks ----------------------------------------------------------------------

def _conv_cls(spatial_dims: int) -> type[nn.Module]:
    return {1: nn.Conv1d, 2: nn.Conv2d}[spatial_dims]


def _bn_cls(spatial_dims: int) -> type[nn.Module]:
    return {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[spatial_dims]


def _pool_cls(spatial_dims: int, linear: bool = False) -> type[nn.Module]:
    """Max-pool, or for the linear control the average pool (commutes with channel rotations)."""
    if linear:
        return {1: nn.AvgPool1d, 2: nn.AvgPool2d}[spatial_dims]
    return {1: nn.MaxPool1d, 2: nn.MaxPool2d}[spatial_dims]


class GlobalAvgPool(nn.Module):
    """Mean over all spatial axes: (b, c, ...) → (b, c).

    Used instead of ``nn.AdaptiveAvgPool2d(1)``, whose CUDA backward has no
    deterministic implementation and raises under ``use_deterministic_algorithms``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).mean(dim=2)


def _adaptive_avg(spatial_dims: int) -> nn.Module:
    del spatial_dims  # the same module pools 1-D and 2-D maps
    return GlobalAvgPool()


class Block(nn.Module):
    """``act(norm(linear(pre(x))))``: one dense layer or conv block.

    ``pre`` is Flatten / max-pool / Identity; ``norm`` is BatchNorm or Identity; the
    pre-activation is the input of ``act``.
    """

    def __init__(self, linear: nn.Module, act: nn.Module, pre: nn.Module | None = None,
                 norm: nn.Module | None = None):
        super().__init__()
        self.pre = pre if pre is not None else nn.Identity()
        self.linear = linear
        self.norm = norm if norm is not None else nn.Identity()
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.linear(self.pre(x))))


class BasicBlock(nn.Module):
    """Post-activation ResNet block: ``relu(bn2(conv2(relu(mid(bn1(conv1(x)))))) + shortcut(x))``.

    ``mid`` is an ``nn.Identity`` placeholder marking the inner pre-activation (the
    rotation test's site); ``act`` is ReLU, or the identity in the linear control.
    """

    def __init__(self, cin: int, cout: int, stride: int, dims: int, act: nn.Module | None = None):
        super().__init__()
        conv, bn = _conv_cls(dims), _bn_cls(dims)
        self.conv1 = conv(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = bn(cout)
        self.conv2 = conv(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = bn(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(conv(cin, cout, 1, stride=stride, bias=False), bn(cout))
        self.mid: nn.Module = nn.Identity()
        self.act = act if act is not None else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.mid(self.bn1(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        return self.act(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """WideResNet block: ``x + conv2(relu(mid(bn2(conv1(relu(bn1(x)))))))``.

    When the shape changes, the shortcut is a 1×1 conv of the pre-activated input, as
    in the authors' implementation. ``mid`` is an ``nn.Identity`` placeholder marking the
    inner pre-activation (the rotation test's site); ``act`` is ReLU or, in the linear
    control, the identity.
    """

    def __init__(self, cin: int, cout: int, stride: int, dims: int, act: nn.Module | None = None):
        super().__init__()
        conv, bn = _conv_cls(dims), _bn_cls(dims)
        self.bn1 = bn(cin)
        self.conv1 = conv(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = bn(cout)
        self.conv2 = conv(cout, cout, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.shortcut = conv(cin, cout, 1, stride=stride, bias=False)
        self.mid: nn.Module = nn.Identity()
        self.act = act if act is not None else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act(self.bn1(x))
        out = self.conv2(self.act(self.mid(self.bn2(self.conv1(pre)))))
        skip = x if self.shortcut is None else self.shortcut(pre)
        return out + skip


class Head(nn.Module):
    """``linear(flatten(pool(pre(x))))``: the classifier after the last named layer."""

    def __init__(self, linear: nn.Linear, pool: nn.Module | None = None, pre: nn.Module | None = None):
        super().__init__()
        self.pre = pre if pre is not None else nn.Identity()
        self.pool = pool if pool is not None else nn.Identity()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.flatten(self.pool(self.pre(x)), 1))


# --- the network --------------------------------------------------------------------------

class ConvergentNet(nn.Module):
    """Named layers in sequence, then a head. ``forward(x)`` → logits (b, num_classes).

    ``frozen_k`` layers (see :func:`freeze_first_layers`) stay in eval mode whatever
    :meth:`train` is asked, so their BatchNorm running statistics never change.
    """

    def __init__(self, arch: str, width: int, input_shape: Sequence[int], num_classes: int,
                 options: Mapping[str, Any], layer_names: Sequence[str],
                 layers: Sequence[nn.Module], head: nn.Module):
        super().__init__()
        if len(layer_names) != len(layers):
            raise ValueError("one module per layer name")
        self.arch, self.width, self.options = arch, int(width), dict(options)
        self.input_shape, self.num_classes = tuple(int(s) for s in input_shape), int(num_classes)
        self.layer_names: list[str] = list(layer_names)
        self.layers = nn.ModuleList(layers)
        self.head = head
        self.frozen_k = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.head(x)

    def forward_layers(self, x: torch.Tensor, upto: int, start: int = 0) -> torch.Tensor:
        """Output of the first ``upto`` layers only (no head): cheap partial forward. With
        ``start``, ``x`` is the output of the first ``start`` layers, and only
        ``layers[start:upto]`` run (a cached prefix carried further)."""
        for layer in self.layers[start:upto]:
            x = layer(x)
        return x

    def train(self, mode: bool = True) -> "ConvergentNet":
        super().train(mode)
        for layer in self.layers[:self.frozen_k]:
            layer.eval()  # frozen BatchNorm keeps its running statistics
        for module in self.modules():
            if is_pinned(module):
                module.eval()
        return self

    # -- layer bookkeeping --

    def layer_index(self, name: str) -> int:
        """0-based position of layer ``name``."""
        try:
            return self.layer_names.index(name)
        except ValueError:
            raise KeyError(f"{self.arch} has no layer {name!r}; layers: {self.layer_names}") from None

    def layer_module(self, name: str) -> nn.Module:
        """The module whose output is the representation of layer ``name``."""
        return self.layers[self.layer_index(name)]

    def layer_modules(self, name: str) -> list[nn.Module]:
        """Every module computing layer ``name`` from the previous layer's output."""
        return list(self.layer_module(name).modules())

    def first_layers(self, k: int) -> list[nn.Module]:
        """The modules computing the first ``k`` layers."""
        if not 0 <= k <= len(self.layers):
            raise ValueError(f"k must be in [0, {len(self.layers)}] for {self.arch}, got {k}")
        return list(self.layers[:k])

    def parameters_of_first(self, k: int) -> Iterator[nn.Parameter]:
        for layer in self.first_layers(k):
            yield from layer.parameters()

    def state_keys_of_first(self, k: int) -> list[str]:
        """``state_dict`` keys (parameters *and* buffers) of the first ``k`` layers."""
        self.first_layers(k)  # validates k
        prefixes = tuple(f"layers.{i}." for i in range(k))
        return [key for key in self.state_dict() if key.startswith(prefixes)] if k else []

    def freeze_first(self, k: int) -> None:
        freeze_first_layers(self, k)

    def named_layer_outputs(self, x: torch.Tensor, names: Sequence[str] | None = None
                            ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(logits, {layer: representation})`` from one forward pass, via forward hooks."""
        names = list(self.layer_names if names is None else names)
        with record_layers(self, names) as out:
            logits = self(x)
        return logits, dict(out)


@contextmanager
def record_layers(model: ConvergentNet | ImportedNet, names: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Forward hooks that store each named layer's output (detached) in the yielded dict.

    The dict is overwritten by every forward pass inside the ``with`` block. Outputs
    are stored without copying; this is safe because no layer of these networks
    modifies its input in place (keep it so: an in-place ReLU after a hooked layer would
    silently change what was recorded).
    """
    out: dict[str, torch.Tensor] = {}
    handles = []
    for name in names:
        def hook(_mod, _inp, output, name=name, copy=isinstance(model, ImportedNet)):  # bind now
            # an imported network may change a tensor in place after the layer: keep a copy
            out[name] = output.detach().clone() if copy else output.detach()
        handles.append(model.layer_module(name).register_forward_hook(hook))
    try:
        yield out
    finally:
        for h in handles:
            h.remove()


# --- a network the user brings: any nn.Module with named layers ---------------------------

#: shapes (per sample) a layer of an imported network may output, and how its store keeps them:
#: (d,) dense units; (c, h, w) conv channels and positions; (t, d) tokens, which the activation
#: store keeps transposed, (d, t), so that the conv views apply unchanged (``positions``: every
#: token of every sample is a row; ``pool``: the mean over tokens; ``flatten``: t·d features)
LAYER_KINDS = {1: "dense", 2: "tokens", 3: "conv"}


class _Stop(Exception):
    """Raised by a forward hook to end a forward pass at a layer; carries its output."""

    def __init__(self, output: Any):
        super().__init__()
        self.output = output


class ImportedNet(nn.Module):
    """A network from a user's factory (``net``) with the interface the pipeline uses.

    ``layer_names``: the named layers (module names of ``net``, as ``named_modules()`` gives them),
    sorted by when their forward completes; a layer's representation is its module's output.
    ``layer_kinds``: ``dense``, ``conv`` or ``tokens`` per layer (:data:`LAYER_KINDS`), from one
    eval-mode probe forward of two zero inputs at construction.

    Freezing ``k`` layers freezes every parameter the output of layer ``k`` depends on (found by
    autograd on the probe, so parameters held by a container, like a class token or a position
    embedding, count) and keeps in eval mode the modules that run before it and compute it
    (:meth:`prefix`). No permutation spec or REPAIR rule exists for an imported network
    (``permutable = False``): LMC's permuted and REPAIR variants come out ``applicable = False``.
    """

    permutable = False

    def __init__(self, arch: str, width: int, input_shape: Sequence[int], num_classes: int,
                 options: Mapping[str, Any], net: nn.Module):
        super().__init__()
        self.arch, self.width, self.options = arch, int(width), dict(options)
        self.input_shape, self.num_classes = tuple(int(s) for s in input_shape), int(num_classes)
        self.net = net
        self.frozen_k = 0
        self._prefixes: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        names = imported_layer_names(net, arch, options)
        shapes, order = self._probe(names)
        self.layer_names: list[str] = sorted(names, key=order.__getitem__)
        self.layer_shapes = {n: shapes[n] for n in self.layer_names}
        self.layer_kinds = {n: LAYER_KINDS[len(shapes[n])] for n in self.layer_names}

    def _probe(self, names: Sequence[str]) -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
        """(per-sample output shape, completion rank) of every named layer; raises ``ValueError``
        naming ``sweep.model.<arch>.layers`` for a layer never called or with an unusable output."""
        key = f"sweep.model.{self.arch}.layers"
        shapes: dict[str, Any] = {}
        order: dict[str, int] = {}

        def hook(_m, _i, output, name):
            if name not in order:
                order[name] = len(order)
                shapes[name] = output

        handles = [self.net.get_submodule(n).register_forward_hook(
            lambda m, i, o, n=n: hook(m, i, o, n)) for n in names]
        was = self.net.training
        try:
            self.net.eval()
            with torch.no_grad():
                self.net(torch.zeros((2, *self.input_shape), device=self._device()))
        finally:
            self.net.train(was)
            for h in handles:
                h.remove()
        out: dict[str, tuple[int, ...]] = {}
        for n in names:
            if n not in order:
                raise ValueError(f"{key}: module {n!r} of {self.arch} is never called by its forward")
            o = shapes[n]
            if not isinstance(o, torch.Tensor):
                raise ValueError(f"{key}: module {n!r} of {self.arch} outputs a {type(o).__name__}, not a tensor; "
                                 f"name a module whose output is one tensor")
            if o.dim() - 1 not in LAYER_KINDS:
                raise ValueError(f"{key}: module {n!r} of {self.arch} outputs shape {tuple(o.shape)}; "
                                 f"allowed: (n, d) units, (n, tokens, d) or (n, c, h, w)")
            out[n] = tuple(int(s) for s in o.shape[1:])
        return out, order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _device(self) -> torch.device:
        """Where the network's parameters are (the probe inputs go there)."""
        return next(self.net.parameters(), torch.empty(0)).device

    def forward_layers(self, x: torch.Tensor, upto: int) -> torch.Tensor:
        """Output of layer ``upto`` (1-based); the forward pass stops there (the rest never runs).
        Hooks registered earlier on that layer (:func:`record_layers`) still fire."""
        if upto == 0:
            return x

        def stop(_m, _i, output):
            raise _Stop(output)

        handle = self.layer_module(self.layer_names[upto - 1]).register_forward_hook(stop)
        try:
            self.net(x)
        except _Stop as done:
            return done.output
        finally:
            handle.remove()
        raise RuntimeError(f"{self.arch}: layer {self.layer_names[upto - 1]!r} did not run")

    def layer_index(self, name: str) -> int:
        try:
            return self.layer_names.index(name)
        except ValueError:
            raise KeyError(f"{self.arch} has no layer {name!r}; layers: {self.layer_names}") from None

    def layer_module(self, name: str) -> nn.Module:
        self.layer_index(name)
        return self.net.get_submodule(name)

    def prefix(self, k: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``(parameter names, module names)`` of ``net`` that compute the first ``k`` layers.

        Parameters: those the output of layer ``k`` depends on (autograd of one eval-mode probe
        forward). Modules: those whose parameters all belong to the prefix, and the ones without
        parameters (dropout, a parameter-free norm) whose forward completes before layer ``k``'s.
        """
        if not 0 <= k <= len(self.layer_names):
            raise ValueError(f"k must be in [0, {len(self.layer_names)}] for {self.arch}, got {k}")
        if k in self._prefixes:
            return self._prefixes[k]
        if k == 0:
            return (), ()
        params = list(self.net.named_parameters())
        done: list[str] = []
        handles = [m.register_forward_hook(lambda _m, _i, _o, n=n: done.append(n))
                   for n, m in self.net.named_modules() if n]
        wanted = [p.requires_grad for _, p in params]
        was = self.net.training
        try:
            for _, p in params:
                p.requires_grad_(True)
            self.net.eval()
            with torch.enable_grad():
                out = self.forward_layers(torch.zeros((2, *self.input_shape), device=self._device()), k)
                grads = torch.autograd.grad(out.float().sum(), [p for _, p in params], allow_unused=True)
        finally:
            self.net.train(was)
            for (_, p), w in zip(params, wanted):
                p.requires_grad_(w)
            for h in handles:
                h.remove()
        frozen = {n for (n, _), g in zip(params, grads) if g is not None}
        completed = set(done)
        modules = []
        for n, m in self.net.named_modules():
            own = [f"{n}.{q}" for q, _ in m.named_parameters()]
            if n and (all(q in frozen for q in own) if own else n in completed):
                modules.append(n)
        self._prefixes[k] = (tuple(n for n, _ in params if n in frozen), tuple(modules))
        return self._prefixes[k]

    def state_keys_of_first(self, k: int) -> list[str]:
        """``state_dict`` keys (parameters and the prefix modules' buffers) of the first ``k`` layers."""
        params, modules = self.prefix(k)
        keys = [f"net.{p}" for p in params]
        for n in modules:
            keys += [f"net.{n}.{b}" for b, _ in self.net.get_submodule(n).named_buffers(recurse=False)]
        return keys

    def freeze_first(self, k: int) -> None:
        """Freeze the prefix of the first ``k`` layers (:meth:`prefix`); everything else trains.
        Recorded in ``frozen_k``; :meth:`train` keeps the prefix's modules in eval mode."""
        params, _ = self.prefix(k)
        frozen = set(params)
        for n, p in self.net.named_parameters():
            p.requires_grad_(n not in frozen)
        self.frozen_k = int(k)
        self.train(self.training)

    def train(self, mode: bool = True) -> "ImportedNet":
        super().train(mode)
        if self.frozen_k:
            for n in self.prefix(self.frozen_k)[1]:
                self.net.get_submodule(n).eval()
        return self

    def named_layer_outputs(self, x: torch.Tensor, names: Sequence[str] | None = None
                            ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        names = list(self.layer_names if names is None else names)
        with record_layers(self, names) as out:
            logits = self(x)
        return logits, dict(out)


@dataclass(frozen=True)
class Probe:
    """What planning needs of a network without training it: its layers (depth order), each
    layer's output shape per sample, and its parameter count."""

    layer_names: tuple[str, ...]
    layer_shapes: tuple[tuple[int, ...], ...]
    params: int


def probe(arch: str, width: int, input_shape: Sequence[int], num_classes: int,
          options: Mapping[str, Any] | None = None) -> Probe:
    """Build ``arch`` once (cached per process: the Snakefile plans every cell) and describe it."""
    return _probe(arch, int(width), tuple(int(s) for s in input_shape), int(num_classes),
                  json.dumps(dict(options or {}), sort_keys=True, default=str))


@functools.lru_cache(maxsize=256)
def _probe(arch: str, width: int, input_shape: tuple[int, ...], num_classes: int, options: str) -> Probe:
    state = torch.random.get_rng_state()   # building draws initial weights: leave the caller's stream alone
    try:
        model = build_model(arch, width, input_shape, num_classes, json.loads(options))
    finally:
        torch.random.set_rng_state(state)
    if isinstance(model, ImportedNet):
        shapes = tuple(model.layer_shapes[n] for n in model.layer_names)
    else:
        with torch.no_grad():
            _, outs = model.eval().named_layer_outputs(torch.zeros((2, *input_shape)))
        shapes = tuple(tuple(int(s) for s in outs[n].shape[1:]) for n in model.layer_names)
    return Probe(tuple(model.layer_names), shapes, count_parameters(model)[0])


def imported_layer_names(net: nn.Module, arch: str, options: Mapping[str, Any]) -> list[str]:
    """The layers the config names for an imported network (in the config's order): option
    ``layers`` (module names), else the children of option ``container`` (default: the top level).
    Raises ``ValueError`` naming the config key for a name ``net`` does not have."""
    modules = dict(net.named_modules())
    layers = options.get("layers")
    if layers:
        unknown = [n for n in layers if n not in modules or n == ""]
        if unknown:
            top = [n for n, _ in net.named_children()]
            raise ValueError(f"sweep.model.{arch}.layers: {arch} has no module {unknown[0]!r}; its top-level "
                             f"modules: {', '.join(top)} (a nested module is named by its dotted path, "
                             f"as named_modules() gives it)")
        if len(set(layers)) != len(layers):
            raise ValueError(f"sweep.model.{arch}.layers has duplicates: {list(layers)}")
        return list(layers)
    container = str(options.get("container") or "")
    if container not in modules:
        raise ValueError(f"sweep.model.{arch}.container: {arch} has no module {container!r}; its top-level "
                         f"modules: {', '.join(n for n, _ in net.named_children())}")
    children = [f"{container}.{n}" if container else n for n, _ in modules[container].named_children()]
    if not children:
        raise ValueError(f"sweep.model.{arch}.container: module {container or '(top level)'!r} of {arch} "
                         f"has no children to compare; name the layers in sweep.model.{arch}.layers")
    return children


# --- builders -----------------------------------------------------------------------------

def build_model(arch: str, width: int, input_shape: Sequence[int], num_classes: int,
                options: Mapping[str, Any] | None = None) -> ConvergentNet | ImportedNet:
    """A freshly initialised network (seed torch beforehand for reproducibility).

    ``arch`` is a built-in name or an import path ``package.module:factory``; both resolve
    through :func:`convergent.nets.registry.arch_factory` and are called as
    ``factory(width, num_classes, input_shape, **options)``. A built-in factory returns a
    :class:`ConvergentNet`; any other module is wrapped in an :class:`ImportedNet` (its layers:
    the option ``layers``, or the children of ``container``, see :func:`imported_layer_names`).
    ``input_shape`` excludes the batch axis: (features,), (c, l) or (c, h, w).
    Built-ins: ``options`` override :data:`convergent.nets.archspec.ARCH_DEFAULTS`; unknown keys raise.
    """
    from convergent.nets.registry import arch_factory

    factory = arch_factory(arch)
    input_shape = tuple(int(s) for s in input_shape)
    if arch in archspec.ARCHS:
        return factory(int(width), int(num_classes), input_shape, **dict(options or {}))
    opts = archspec.arch_options(arch, options)
    try:
        net = factory(int(width), int(num_classes), input_shape, **archspec.factory_options(opts))
    except Exception as err:   # the user's code: say which call failed and where its options come from
        first = str(err).splitlines()[0] if str(err) else ""
        raise ValueError(f"sweep.archs: {arch}(width={width}, num_classes={num_classes}, input_shape={input_shape}, "
                         f"**sweep.model.{arch}) raised {type(err).__name__}: {first}") from err
    if not isinstance(net, nn.Module):
        raise TypeError(f"sweep.archs: factory {arch!r} returned a {type(net).__name__}, not a torch nn.Module")
    return ImportedNet(arch, width, input_shape, num_classes, opts, net)


def _builtin(arch: str, width: int, num_classes: int, input_shape: Sequence[int], **options: Any) -> ConvergentNet:
    """The built-in ``arch`` with the factory signature of the registry (:data:`convergent.nets.registry.ARCH_REGISTRY`)."""
    opts = archspec.arch_options(arch, options)
    unknown = set(opts) - ALLOWED_OPTIONS[arch]
    if unknown:
        raise ValueError(f"unknown {arch} options {sorted(unknown)}; allowed: {sorted(ALLOWED_OPTIONS[arch])}")
    if int(width) < 1:
        raise ValueError(f"width must be a positive integer, got {width}")
    input_shape = tuple(int(s) for s in input_shape)
    names = archspec.layer_names(arch, opts)
    builder = {"mlp": _mlp, "cnn": _cnn, "resnet18": _resnet18, "wrn": _wrn}[arch]
    layers, head = builder(int(width), input_shape, int(num_classes), opts)
    model = ConvergentNet(arch, width, input_shape, num_classes, opts, names, layers, head)
    _check_names(model, names)
    return model


def _check_names(model: ConvergentNet, names: list[str]) -> None:
    if model.layer_names != names or len(model.layers) != len(names):
        raise AssertionError(f"{model.arch}: built layers do not match archspec {names}")


def mlp(width: int, num_classes: int, input_shape: Sequence[int], **options: Any) -> ConvergentNet:
    """Registry factory of ``mlp`` (:data:`convergent.nets.registry.ARCH_REGISTRY`)."""
    return _builtin("mlp", width, num_classes, input_shape, **options)


def cnn(width: int, num_classes: int, input_shape: Sequence[int], **options: Any) -> ConvergentNet:
    """Registry factory of ``cnn``."""
    return _builtin("cnn", width, num_classes, input_shape, **options)


def resnet18(width: int, num_classes: int, input_shape: Sequence[int], **options: Any) -> ConvergentNet:
    """Registry factory of ``resnet18``."""
    return _builtin("resnet18", width, num_classes, input_shape, **options)


def wrn(width: int, num_classes: int, input_shape: Sequence[int], **options: Any) -> ConvergentNet:
    """Registry factory of ``wrn``."""
    return _builtin("wrn", width, num_classes, input_shape, **options)


def is_pinned(module: nn.Module) -> bool:
    """Whether ``module`` is marked ``pinned``: frozen and in eval mode whatever ``frozen_k`` is.

    The rotation test pins the modules inside a block that compute the rotated
    pre-activation (everything at and below R is frozen)."""
    return bool(getattr(module, "pinned", False))


def is_batchnorm(module: nn.Module) -> bool:
    """Whether ``module`` is a BatchNorm of any dimension (channel-wise affine map + running stats)."""
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


def _activation(opts: Mapping[str, Any]) -> nn.Module:
    return nn.Identity() if opts.get("linear", False) else nn.ReLU()


def _he_init(module: nn.Module, nonlinearity: str, mode: str) -> None:
    """He-normal weights, zero biases for every conv/linear in ``module``; BN to (1, 0)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity=nonlinearity)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif is_batchnorm(m):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _spatial_dims(input_shape: tuple[int, ...], arch: str) -> int:
    if len(input_shape) not in (2, 3):
        raise ValueError(f"{arch} needs input (c, l) or (c, h, w), got {input_shape}")
    return len(input_shape) - 1


def _mlp(width: int, input_shape: tuple[int, ...], num_classes: int, opts: Mapping[str, Any]):
    depth = int(opts["depth"])
    nonlin = "linear" if opts.get("linear", False) else "relu"
    fan_in = 1
    for s in input_shape:
        fan_in *= s
    layers = []
    for i in range(depth):
        pre = nn.Flatten() if i == 0 else None
        layers.append(Block(nn.Linear(fan_in if i == 0 else width, width), _activation(opts), pre=pre))
    for layer in layers:
        _he_init(layer, nonlin, "fan_in")
    return layers, Head(nn.Linear(width, num_classes))


def _cnn(width: int, input_shape: tuple[int, ...], num_classes: int, opts: Mapping[str, Any]):
    dims = _spatial_dims(input_shape, "cnn")
    linear = bool(opts.get("linear", False))
    conv, bn, pool = _conv_cls(dims), _bn_cls(dims), _pool_cls(dims, linear)
    use_bn = bool(opts.get("batchnorm", False))
    nonlin = "linear" if linear else "relu"
    layers, cin = [], input_shape[0]
    for i in range(int(opts["depth"])):
        cout = width * 2 ** (i // 2)
        # pooling "after every second block" sits at the start of the next block so
        # that block i's output (its representation) is the un-pooled post-ReLU map
        pre = pool(2, ceil_mode=True) if i >= 2 and i % 2 == 0 else None
        layers.append(Block(conv(cin, cout, 3, padding=1, bias=not use_bn), _activation(opts),
                            pre=pre, norm=bn(cout) if use_bn else None))
        cin = cout
    for layer in layers:
        _he_init(layer, nonlin, "fan_in")
    return layers, Head(nn.Linear(cin, num_classes), pool=_adaptive_avg(dims))


def _resnet18(width: int, input_shape: tuple[int, ...], num_classes: int, opts: Mapping[str, Any]):
    dims = _spatial_dims(input_shape, "resnet18")
    conv, bn = _conv_cls(dims), _bn_cls(dims)
    nonlin = "linear" if opts.get("linear", False) else "relu"
    stem = Block(conv(input_shape[0], width, 3, padding=1, bias=False), _activation(opts), norm=bn(width))
    layers: list[nn.Module] = [stem]
    cin = width
    for s in range(4):
        cout = width * 2 ** s
        for b in range(2):
            stride = 2 if (s > 0 and b == 0) else 1
            layers.append(BasicBlock(cin, cout, stride, dims, _activation(opts)))
            cin = cout
    for layer in layers:
        _he_init(layer, nonlin, "fan_out")
    return layers, Head(nn.Linear(cin, num_classes), pool=_adaptive_avg(dims))


def _wrn(width: int, input_shape: tuple[int, ...], num_classes: int, opts: Mapping[str, Any]):
    dims = _spatial_dims(input_shape, "wrn")
    conv, bn = _conv_cls(dims), _bn_cls(dims)
    n = archspec.wrn_blocks_per_stage(int(opts["depth"]))
    nonlin = "linear" if opts.get("linear", False) else "relu"
    stem = Block(conv(input_shape[0], 16, 3, padding=1, bias=False), nn.Identity())
    layers: list[nn.Module] = [stem]
    cin = 16
    for s in range(3):
        cout = 16 * width * 2 ** s
        for b in range(n):
            stride = 2 if (s > 0 and b == 0) else 1
            layers.append(PreActBlock(cin, cout, stride, dims, _activation(opts)))
            cin = cout
    for layer in layers:
        _he_init(layer, nonlin, "fan_out")
    final = nn.Sequential(bn(cin), _activation(opts))
    _he_init(final, nonlin, "fan_out")
    return layers, Head(nn.Linear(cin, num_classes), pool=_adaptive_avg(dims), pre=final)


# --- freezing and copying -----------------------------------------------------------------

def copy_first_layers(dst: ConvergentNet | ImportedNet, src_state_dict: Mapping[str, torch.Tensor], k: int) -> list[str]:
    """Copy every parameter and buffer of ``dst``'s first ``k`` layers from ``src_state_dict``.

    Returns the copied keys. Raises if a key is missing or a shape differs (the source
    must be the same architecture, width and options up to layer ``k``).
    """
    keys = dst.state_keys_of_first(k)
    missing = [key for key in keys if key not in src_state_dict]
    if missing:
        raise KeyError(f"reference state lacks {len(missing)} keys of the first {k} layers, e.g. {missing[:3]}")
    own = dst.state_dict()
    with torch.no_grad():
        for key in keys:
            src = src_state_dict[key]
            if tuple(src.shape) != tuple(own[key].shape):
                raise ValueError(f"{key}: reference shape {tuple(src.shape)} != model shape {tuple(own[key].shape)}")
            own[key].copy_(src)  # state_dict tensors share storage with the module
    return keys


def freeze_first_layers(model: ConvergentNet | ImportedNet, k: int) -> None:
    """Freeze the first ``k`` layers: no gradients, and BatchNorm kept in eval mode.

    Layers after ``k`` are made trainable again, so calling this twice with different
    ``k`` leaves exactly the last ``k`` frozen. Modules marked ``pinned`` (see
    :func:`is_pinned`) stay frozen wherever they are.
    """
    if isinstance(model, ImportedNet):
        model.freeze_first(k)
        return
    model.first_layers(k)  # validates k
    for i, layer in enumerate(model.layers):
        for p in layer.parameters():
            p.requires_grad_(i >= k)
    for module in model.modules():
        if is_pinned(module):
            for p in module.parameters():
                p.requires_grad_(False)
    model.frozen_k = int(k)
    model.train(model.training)  # re-apply the eval mode of the frozen prefix


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(all, trainable)`` parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return int(total), int(trainable)
