"""Function-preserving permutations of hidden units, and two ways to find them.

Conventions

* A *permutation group* is a set of hidden units (neurons of a dense layer, channels
  of a conv map) that must be permuted together for the network to compute the same
  function. Its permutation is an int64 array ``perm`` of length ``size`` meaning
  "unit ``i`` of the permuted network is unit ``perm[i]`` of the original". Applying
  it gathers ``W[perm]`` along every tensor axis that carries those units.
* Matching B onto A returns ``perms`` (group name → array) such that
  ``apply_permutation(state_b, model, perms)`` puts B's unit ``perm[i]`` in position
  ``i``, the one it matched in A.
* The *permutation spec* (:func:`permutation_spec`, as in Git Re-Basin's
  ``permutation_spec``) is data: an ordered dict of :class:`PermGroup`, each listing
  every ``(state_dict key, axis)`` its permutation acts on and the *probes* (module
  outputs) whose channel axis carries its units. It is derived from the model by one
  rule per module type, so mlp, cnn, resnet18 and wrn all go through the same
  :func:`apply_permutation`, :func:`activation_matching` and :func:`weight_matching`.
  Never permuted: the input axis of the first layer, the classifier's outputs,
  ``num_batches_tracked`` — which is why the network's function is unchanged.

Groups per architecture (a group is named after the layer that creates it)

* ``mlp`` / ``cnn``: one group per layer (``fc1``, ``conv2``, …): its linear/conv
  out-axis (weight axis 0, bias), its BatchNorm (weight, bias, running mean and
  variance) and the next layer's — or the classifier's — input axis 1.
* ``resnet18`` (post-activation BasicBlocks): every tensor that adds into the same
  residual stream shares one group. The stream starts at ``stem`` (stem conv + BN) and
  continues through every block with an identity shortcut (its ``conv2``/``bn2``
  out-axis); a block with a 1×1 shortcut conv starts a new stream, named after that
  block (``layer2.0``: ``conv2``/``bn2`` and the shortcut conv/BN out-axes). Each
  block's internal channels (``conv1``/``bn1`` out, ``conv2`` in) are a free group
  ``<block>.inner``. Input axes (``conv1``, shortcut conv, classifier) follow the
  stream feeding them.
* ``wrn`` (pre-activation blocks): the same, plus the pre-activation ``bn1`` of each
  block and the head's final BatchNorm, which act on the incoming stream; ``bn2``
  belongs to the block's inner group. The stem (16 channels, no BN) starts the first
  stream; with widening factor 1 the first stage's blocks have identity shortcuts and
  continue it.

Operational choices (recorded here because the papers leave them open)

* Activation matching (:func:`activation_matching`): correlations come from the measure
  engine — :class:`convergent.moments.MomentAccumulator` (float64) and
  :func:`convergent.measures.matching.correlation_matrix` — with its dead-unit rule
  (variance ≤ ``DEFAULT_DEAD_TOL`` × the layer's largest variance): a dead unit gets
  correlation 0 with every unit. Conv channels are units and every spatial position
  of every image is a sample. A group's probes are the outputs of every layer whose
  representation carries it (the layer outputs of :mod:`convergent.nets.models`: post-ReLU
  in mlp/cnn/resnet18, the residual stream ``x + f(x)`` in wrn) and, for a block's
  inner group, the post-ReLU output of the block's first BatchNorm (resnet18 ``bn1``,
  wrn ``bn2``). A group with several probes (a residual stream) is matched on the
  **mean of its probes' correlation matrices**, each probe weighted equally
  (concatenating the rows instead would mix points with different means and scales
  into one correlation). One Hungarian assignment (``linear_sum_assignment``,
  maximise) per group, all on the *unpermuted* networks: permuting one group never
  changes another group's units, so the problems are independent.
* Weight matching (:func:`weight_matching`, Ainsworth et al. 2023): coordinate descent
  over the groups in a random order per sweep (``numpy`` generator seeded by ``seed``),
  each a ``linear_sum_assignment`` on Σ W_A (P W_B)ᵀ over the group's tensors with
  every other axis permuted by its current permutation; starts from the identity;
  stops after a sweep in which no group improves by more than ``tol`` (relative) or
  after ``max_sweeps`` = 100. Float64 on CPU. BatchNorm running statistics are *not*
  part of the objective (they are statistics of the data, not weights, and their
  variances would swamp the weight terms); BN affine weight and bias are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from convergent.measures._common import MeasureUnavailable
from convergent.measures.matching import correlation_matrix
from convergent.nets.models import BasicBlock, Block, ConvergentNet, Head, PreActBlock, is_batchnorm
from convergent.moments import MomentAccumulator, Moments

Perms = dict[str, np.ndarray]
Entry = tuple[str, int]  # (state_dict key, axis)

_BN_KEYS = ("weight", "bias", "running_mean", "running_var")
_BN_STATS = ("running_mean", "running_var")


# --- the spec -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Probe:
    """A point where a group's units can be observed: the output of module ``module``
    (a dotted path of ``model.named_modules()``), its axis 1 being the units;
    ``relu=True`` applies ReLU to it first (to observe a post-activation value where
    the ReLU module itself is shared and cannot be hooked separately)."""

    module: str
    relu: bool = False


@dataclass
class PermGroup:
    """One permutation group: ``size`` units, the tensor axes they occupy, their probes.

    ``axes`` lists ``(state_dict key, axis)``; ``axes[0]`` is an out-axis (the group's
    defining tensor). ``probes`` are in input-to-output order.
    """

    name: str
    size: int
    axes: list[Entry] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)


#: group name → group, in input-to-output order of creation
PermSpec = dict[str, PermGroup]


class _SpecBuilder:
    """Collects groups while the per-module rules walk the network (checks every size)."""

    def __init__(self, model: ConvergentNet):
        self.model = model
        self.state = model.state_dict()
        self.spec: PermSpec = {}

    def group(self, name: str, size: int) -> str:
        if name in self.spec:
            raise AssertionError(f"duplicate permutation group {name!r}")
        self.spec[name] = PermGroup(name, int(size))
        return name

    def add(self, group: str | None, key: str, axis: int) -> None:
        """``key``'s ``axis`` carries ``group``'s units (no-op for the unpermuted input,
        ``group=None``, and for absent keys such as a missing bias)."""
        if group is None or key not in self.state:
            return
        g = self.spec[group]
        if self.state[key].shape[axis] != g.size:
            raise AssertionError(f"{key} axis {axis} has {self.state[key].shape[axis]} units, group {group} {g.size}")
        if any(k == key and a == axis for gg in self.spec.values() for k, a in gg.axes):
            raise AssertionError(f"{key} axis {axis} claimed by two groups")
        g.axes.append((key, axis))

    def produce(self, group: str, path: str) -> None:
        """A linear/conv map at ``path`` writes ``group``'s units (weight axis 0, bias)."""
        self.add(group, f"{path}.weight", 0)
        self.add(group, f"{path}.bias", 0)

    def consume(self, group: str | None, path: str) -> None:
        """A linear/conv map at ``path`` reads ``group``'s units (weight axis 1)."""
        self.add(group, f"{path}.weight", 1)

    def norm(self, group: str | None, path: str) -> None:
        """The module at ``path``, if a BatchNorm, acts channel-wise on ``group``'s units."""
        if is_batchnorm(self.model.get_submodule(path)):
            for t in _BN_KEYS:
                self.add(group, f"{path}.{t}", 0)

    def probe(self, group: str, path: str, relu: bool = False) -> None:
        self.spec[group].probes.append(Probe(path, relu))


def _block_rule(sb: _SpecBuilder, m: Block, path: str, name: str, incoming: str | None) -> str:
    """mlp/cnn layer or resnet stem: a new group, read by the next consumer."""
    g = sb.group(name, m.linear.weight.shape[0])
    sb.consume(incoming, f"{path}.linear")
    sb.produce(g, f"{path}.linear")
    sb.norm(g, f"{path}.norm")
    sb.probe(g, path)
    return g


def _basic_block_rule(sb: _SpecBuilder, m: BasicBlock, path: str, name: str, incoming: str | None) -> str:
    """Post-activation block: inner group; output stream = incoming unless a shortcut conv."""
    inner = sb.group(f"{name}.inner", m.conv1.weight.shape[0])
    sb.consume(incoming, f"{path}.conv1")
    sb.produce(inner, f"{path}.conv1")
    sb.norm(inner, f"{path}.bn1")
    sb.probe(inner, f"{path}.bn1", relu=True)  # `act` is shared by both ReLUs: hook bn1
    sb.consume(inner, f"{path}.conv2")
    out = incoming
    if not isinstance(m.shortcut, nn.Identity):
        out = sb.group(name, m.conv2.weight.shape[0])
        sb.consume(incoming, f"{path}.shortcut.0")
        sb.produce(out, f"{path}.shortcut.0")
        sb.norm(out, f"{path}.shortcut.1")
    assert out is not None, "a residual block cannot be the first layer"
    sb.produce(out, f"{path}.conv2")
    sb.norm(out, f"{path}.bn2")
    sb.probe(out, path)
    return out


def _preact_block_rule(sb: _SpecBuilder, m: PreActBlock, path: str, name: str, incoming: str | None) -> str:
    """Pre-activation block: ``bn1`` on the incoming stream, ``bn2`` on the inner group."""
    sb.norm(incoming, f"{path}.bn1")
    inner = sb.group(f"{name}.inner", m.conv1.weight.shape[0])
    sb.consume(incoming, f"{path}.conv1")
    sb.produce(inner, f"{path}.conv1")
    sb.norm(inner, f"{path}.bn2")
    sb.probe(inner, f"{path}.bn2", relu=True)
    sb.consume(inner, f"{path}.conv2")
    out = incoming
    if m.shortcut is not None:
        out = sb.group(name, m.conv2.weight.shape[0])
        sb.consume(incoming, f"{path}.shortcut")
        sb.produce(out, f"{path}.shortcut")
    assert out is not None, "a residual block cannot be the first layer"
    sb.produce(out, f"{path}.conv2")
    sb.probe(out, path)
    return out


def _head_rule(sb: _SpecBuilder, m: Head, path: str, incoming: str | None) -> None:
    """Head: any BatchNorm in ``pre`` (wrn's final BN) and the classifier's input axis."""
    for sub, mod in m.pre.named_modules():
        if sub and is_batchnorm(mod):
            sb.norm(incoming, f"{path}.pre.{sub}")
    sb.consume(incoming, f"{path}.linear")


_LAYER_RULES = {Block: _block_rule, BasicBlock: _basic_block_rule, PreActBlock: _preact_block_rule}


def permutation_spec(model: ConvergentNet) -> PermSpec:
    """Every permutation group of ``model`` (module docstring), input to output.

    Raises :class:`NotImplementedError` for a layer module without a rule.
    """
    sb = _SpecBuilder(model)
    group: str | None = None  # the input's channels are never permuted
    for i, (name, layer) in enumerate(zip(model.layer_names, model.layers)):
        rule = _LAYER_RULES.get(type(layer))
        if rule is None:
            raise NotImplementedError(f"no permutation rule for {type(layer).__name__} ({model.arch} {name})")
        group = rule(sb, layer, f"layers.{i}", name, group)
    if not isinstance(model.head, Head):
        raise NotImplementedError(f"no permutation rule for head {type(model.head).__name__}")
    _head_rule(sb, model.head, "head", group)
    return sb.spec


def _axes_of(spec: PermSpec) -> dict[str, dict[int, str]]:
    """Inverse view of a spec: state key → {axis: group name}."""
    out: dict[str, dict[int, str]] = {}
    for name, g in spec.items():
        for key, axis in g.axes:
            out.setdefault(key, {})[axis] = name
    return out


def _validate(perms: Mapping[str, np.ndarray], spec: PermSpec) -> None:
    unknown = set(perms) - set(spec)
    if unknown:
        raise KeyError(f"permutations for unknown groups {sorted(unknown)}; groups: {list(spec)}")
    for name, perm in perms.items():
        d = spec[name].size
        p = np.asarray(perm)
        if p.shape != (d,) or not np.array_equal(np.sort(p), np.arange(d)):
            raise ValueError(f"perm of {name} is not a permutation of range({d})")


def permute_tensor(t: torch.Tensor, axes: Mapping[int, np.ndarray]) -> torch.Tensor:
    """``t`` gathered along each axis in ``axes`` (axis → perm): ``t[..., perm, ...]``."""
    for axis, perm in axes.items():
        t = t.index_select(axis, torch.as_tensor(np.asarray(perm), dtype=torch.long, device=t.device))
    return t


def apply_permutation(state_dict: Mapping[str, torch.Tensor], model: ConvergentNet,
                      perms: Mapping[str, np.ndarray], spec: PermSpec | None = None) -> dict[str, torch.Tensor]:
    """A new state dict whose hidden units are permuted by ``perms`` (group → index array).

    Groups absent from ``perms`` keep their order. The permuted network computes the
    same function as the original (up to float rounding in summation order).
    ``spec`` defaults to :func:`permutation_spec` of ``model``.
    """
    spec = permutation_spec(model) if spec is None else spec
    _validate(perms, spec)
    axes = _axes_of({n: g for n, g in spec.items() if n in perms})
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
    """One uniformly random permutation per group (for tests and null models)."""
    rng = np.random.default_rng(seed)
    return {name: rng.permutation(g.size) for name, g in permutation_spec(model).items()}


def _assignment(score: np.ndarray) -> np.ndarray:
    """Permutation (d,) maximising Σ_i score[i, perm[i]] (``linear_sum_assignment``)."""
    rows, cols = linear_sum_assignment(score, maximize=True)
    return cols[np.argsort(rows)].astype(np.int64)


# --- activation matching ------------------------------------------------------------------

def _units_as_columns(h: torch.Tensor) -> np.ndarray:
    """(b, d) → (b, d); conv (b, c, *spatial) → (b·positions, c): positions are samples."""
    if h.dim() > 2:
        h = h.movedim(1, -1).reshape(-1, h.shape[1])
    return h.detach().cpu().numpy()


def _full_correlation(m: Moments) -> np.ndarray:
    """(d1, d2) Pearson correlation from the measure engine; dead units' rows/columns 0."""
    out = np.zeros((m.d1, m.d2))
    try:
        c = correlation_matrix(m)
    except MeasureUnavailable:  # every unit of one side dead: nothing to match on
        return out
    out[np.ix_(c.idx_a, c.idx_b)] = c.r
    return out


@torch.no_grad()
def probe_moments(model_a: ConvergentNet, model_b: ConvergentNet, x: torch.Tensor, probes: list[Probe],
                  batch_size: int = 1024) -> dict[Probe, Moments]:
    """Joint float64 moments of A's and B's units at each probe, over inputs ``x`` (n, ...).

    One eval-mode pass per network in batches of ``batch_size`` inputs; each batch's rows go
    to one :class:`~convergent.moments.MomentAccumulator` per probe, which multiplies them in
    blocks of bounded size (memory independent of n). Only first and second moments are used
    (no alignment/minibatch/subsample terms); a single class label.
    """
    was = model_a.training, model_b.training
    model_a.eval(), model_b.eval()
    acc: dict[Probe, MomentAccumulator] = {}
    out: dict[str, dict[Probe, torch.Tensor]] = {"a": {}, "b": {}}
    handles = []
    for side, model in (("a", model_a), ("b", model_b)):
        for p in probes:
            def hook(_m, _i, o, p=p, side=side):  # bind now, not at call time
                out[side][p] = torch.relu(o) if p.relu else o
            handles.append(model.get_submodule(p.module).register_forward_hook(hook))
    device = next(model_a.parameters()).device
    try:
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size].to(device)
            model_a(xb), model_b(xb)
            for p in probes:
                a, b = _units_as_columns(out["a"][p]), _units_as_columns(out["b"][p])
                if p not in acc:  # rows per input are known only now (conv positions)
                    rows = len(x) * (a.shape[0] // len(xb))
                    acc[p] = MomentAccumulator(a.shape[1], b.shape[1], 1, n_rows=rows, fold_split=rows // 2,
                                               alignment=False, precision="float64")
                acc[p].update(a, b, np.zeros(a.shape[0], dtype=np.int64))
    finally:
        for h in handles:
            h.remove()
        model_a.train(was[0]), model_b.train(was[1])
    return {p: acc[p].result({"probe": p.module, "relu": p.relu}) for p in probes}


def group_correlations(model_a: ConvergentNet, model_b: ConvergentNet, x: torch.Tensor,
                       batch_size: int = 1024, spec: PermSpec | None = None) -> dict[str, np.ndarray]:
    """Per group, the (size, size) correlation of A's units (rows) with B's (columns):
    the mean over the group's probes of each probe's Pearson correlation matrix, dead
    units 0 (module docstring)."""
    spec = permutation_spec(model_a) if spec is None else spec
    probes = [p for g in spec.values() for p in g.probes]
    moments = probe_moments(model_a, model_b, x, probes, batch_size)
    return {name: np.mean([_full_correlation(moments[p]) for p in g.probes], axis=0)
            for name, g in spec.items()}


def activation_matching(model_a: ConvergentNet, model_b: ConvergentNet, x: torch.Tensor,
                        batch_size: int = 1024) -> Perms:
    """Permutations of B's units maximising the summed correlation with A's, group by group.

    ``x``: inputs (n, *input_shape). One Hungarian assignment per group on
    :func:`group_correlations` of the *unpermuted* networks. Dead units correlate 0
    with everything, so their assignment is arbitrary (it does not change the function).
    """
    return {name: _assignment(c) for name, c in group_correlations(model_a, model_b, x, batch_size).items()}


# --- weight matching ----------------------------------------------------------------------

def _matching_spec(spec: PermSpec, state: Mapping[str, torch.Tensor]) -> PermSpec:
    """Spec without BN running statistics (module docstring) and non-float tensors."""
    return {n: PermGroup(n, g.size, [(k, a) for k, a in g.axes
                                     if not k.endswith(_BN_STATS) and state[k].is_floating_point()], g.probes)
            for n, g in spec.items()}


def weight_matching(state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor],
                    model: ConvergentNet, max_sweeps: int = 100, seed: int = 0,
                    tol: float = 1e-9) -> Perms:
    """Ainsworth et al. (2023) weight matching of B onto A.

    Maximises Σ_tensors ⟨W_A, P(W_B)⟩ by coordinate descent over the groups of
    :func:`permutation_spec` (module docstring for the stopping rule). The score for
    group g is S = Σ_{(key, axis) ∈ g} W_A[key]ₐ · (W_B[key] with every *other* axis
    permuted by its current permutation)ₐᵀ, where ``ₐ`` moves ``axis`` first and
    flattens the rest: incoming weights, biases, BN affine parameters and the
    consumers' input axes of every tensor in the group.
    """
    spec = _matching_spec(permutation_spec(model), state_a)
    axes = _axes_of(spec)
    wa = {k: state_a[k].detach().double().cpu() for k in axes}
    wb = {k: state_b[k].detach().double().cpu() for k in axes}
    perms: Perms = {n: np.arange(g.size) for n, g in spec.items()}
    rng = np.random.default_rng(seed)
    names = list(spec)
    for _ in range(max_sweeps):
        improved = False
        for idx in rng.permutation(len(names)):
            name = names[idx]
            d = spec[name].size
            score = torch.zeros(d, d, dtype=torch.float64)
            for key, axis in spec[name].axes:
                others = {ax: perms[n] for ax, n in axes[key].items() if ax != axis}
                b = permute_tensor(wb[key], others)
                score += wa[key].movedim(axis, 0).reshape(d, -1) @ b.movedim(axis, 0).reshape(d, -1).T
            s = score.numpy()
            new = _assignment(s)
            old_val, new_val = s[np.arange(d), perms[name]].sum(), s[np.arange(d), new].sum()
            if new_val > old_val + tol * max(abs(old_val), 1.0):
                perms[name] = new
                improved = True
        if not improved:
            break
    return {n: p.astype(np.int64) for n, p in perms.items()}
