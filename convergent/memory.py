"""How much memory a job needs, estimated from the config before any job runs.

Pure Python (no torch): the Snakefile plans with it on every invocation, dry runs included.
From the architecture, width, input shape (:data:`convergent.nets.dataspec.DATASET_SHAPES`),
batch sizes and ``extract.max_samples`` it counts

* **parameters** ``P`` of the network (tested equal to the built torch model's count), and
* **activations**: the elements of every layer's output per sample (tested equal to the
  shapes forward hooks see),

and turns them into the peak resident memory of a job, in MB (2**20 bytes), as

    base + data + params + activations

* ``base``: the process after its imports (Python, torch, numpy, zarr, Snakemake's script
  preamble): :data:`BASE_MB`, measured (``bench/bench_memory.py`` prints it);
* ``data``: both splits in float32, :data:`DATA_COPIES` times (the loader holds the raw
  array, its standardised copy and a temporary while it standardises);
* ``params``: ``P`` float32 values, :data:`PARAM_COPIES` times for training (weights,
  gradients, the state-dict copies of the checkpoints and the resume file) plus one per
  optimizer state (SGD momentum: 1, Adam: 2); two for extraction (model and loaded state);
* ``activations``: training keeps, per sample of a minibatch, the tensors backward needs
  (:data:`SAVED_PER_LAYER` layer outputs per layer, by architecture); evaluation (no
  gradient, batches of ``eval_batch_size``) holds about three maps of its widest layer at a
  time; extraction holds every layer of a batch of ``chunk_rows`` samples three
  times (the hooked outputs, the writer's buffer and the encoded chunk).

The estimate is checked against the peak RSS Snakemake's benchmarks record (``runtime.csv``,
``max_rss``) on the default sweep and on paper-shaped jobs: within 2x either way (README,
*Memory per job*). :func:`convergent.sweep.plan_sweep` refuses a width whose estimate exceeds
the memory limit before anything runs, and each network rule asks for
:func:`request_mb` (the estimate with :data:`REQUEST_HEADROOM`) as its ``mem_mb``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from convergent.nets.archspec import arch_options, is_imported, wrn_blocks_per_stage
from convergent.nets.dataspec import dataset_shape, split_sizes
from convergent.settings import ExtractSettings, TrainingSettings

MB = 2**20
#: resident memory of a job's process after its imports, before any data (MB). Measured by
#: bench/bench_memory.py (torch 2 CPU build, Python 3.11, Snakemake's script preamble): 613 MB
BASE_MB = 620
#: what a job asks for (its ``mem_mb``) over its estimate: the estimate is central (measured
#: peaks were 0.9-1.5x it, README *Memory per job*), the request must cover the peak
REQUEST_HEADROOM = 1.5
#: copies of the data the loader holds at its peak (raw, standardised, one temporary)
DATA_COPIES = 3
#: float32 copies of the parameters while training, besides the optimizer's states
PARAM_COPIES = 4
#: optimizer states per parameter
OPTIMIZER_STATES = {"sgd": 1, "adam": 2}
#: layer-output-sized tensors kept per layer and sample for backward (and its gradients):
#: a dense/conv block keeps its pre-activation, normalised and activated maps; a residual
#: block two convs, two BatchNorms, the sum and the shortcut
SAVED_PER_LAYER = {"mlp": 4, "cnn": 5, "resnet18": 12, "wrn": 10}
#: the same for an imported architecture, whose layers are not known to this module: a
#: transformer block keeps about this many (norms, attention's projections, its MLP)
IMPORTED_SAVED_PER_LAYER = 16


@dataclass(frozen=True)
class Geometry:
    """Sizes of one network: ``params`` (all parameters, BatchNorm's affine included; buffers
    not), ``layer_elems[i]``: elements of layer i's output for one sample (c·h·w)."""

    params: int
    layer_elems: tuple[int, ...]


def _half(n: int) -> int:
    """Length after a stride-2 3x3 conv (padding 1), a 1x1 stride-2 conv or a 2x2 ceil-mode pool."""
    return -(-n // 2)


def geometry(arch: str, width: int, input_shape: Sequence[int], num_classes: int,
             options: Mapping[str, Any] | None = None) -> Geometry:
    """Parameter count and per-layer output sizes of ``arch`` at ``width`` (see
    :mod:`convergent.nets.models`) on inputs of ``input_shape`` (c, l) or (c, h, w)."""
    opts = arch_options(arch, options)
    shape = tuple(int(s) for s in input_shape)
    if is_imported(arch):   # built once (torch) by convergent.nets.models.probe; a built-in is counted here
        from convergent.nets.models import probe

        p = probe(arch, width, shape, num_classes, opts)
        return Geometry(p.params, tuple(math.prod(s) for s in p.layer_shapes))
    if arch == "mlp":
        fan_in = math.prod(shape)
        depth = int(opts["depth"])
        params = fan_in * width + width + (depth - 1) * (width * width + width) + width * num_classes + num_classes
        return Geometry(params, (width,) * depth)
    c, spatial = shape[0], list(shape[1:])
    k = 3 ** len(spatial)   # a 3x3 (or 3-tap) kernel
    elems: list[int] = []
    params = 0
    if arch == "cnn":
        bn = bool(opts.get("batchnorm", False))
        cin = c
        for i in range(int(opts["depth"])):
            cout = width * 2 ** (i // 2)
            if i >= 2 and i % 2 == 0:
                spatial = [_half(s) for s in spatial]
            params += k * cin * cout + (2 * cout if bn else cout)
            elems.append(cout * math.prod(spatial))
            cin = cout
        return Geometry(params + cin * num_classes + num_classes, tuple(elems))
    if arch == "resnet18":
        params += k * c * width + 2 * width
        elems.append(width * math.prod(spatial))
        cin = width
        for s in range(4):
            cout = width * 2 ** s
            for b in range(2):
                stride = 2 if (s > 0 and b == 0) else 1
                if stride == 2:
                    spatial = [_half(n) for n in spatial]
                params += k * cin * cout + 2 * cout + k * cout * cout + 2 * cout
                if stride != 1 or cin != cout:
                    params += cin * cout + 2 * cout   # 1x1 conv + BatchNorm shortcut
                elems.append(cout * math.prod(spatial))
                cin = cout
        return Geometry(params + cin * num_classes + num_classes, tuple(elems))
    if arch == "wrn":
        n = wrn_blocks_per_stage(int(opts["depth"]))
        params += k * c * 16
        elems.append(16 * math.prod(spatial))
        cin = 16
        for s in range(3):
            cout = 16 * width * 2 ** s
            for b in range(n):
                stride = 2 if (s > 0 and b == 0) else 1
                if stride == 2:
                    spatial = [_half(m) for m in spatial]
                params += 2 * cin + k * cin * cout + 2 * cout + k * cout * cout
                if stride != 1 or cin != cout:
                    params += cin * cout   # 1x1 conv shortcut, no BatchNorm
                elems.append(cout * math.prod(spatial))
                cin = cout
        return Geometry(params + 2 * cin + cin * num_classes + num_classes, tuple(elems))
    raise ValueError(f"unknown architecture {arch!r}")


@dataclass(frozen=True)
class Estimate:
    """Estimated peak resident memory of one job, in MB, and its parts (MB)."""

    job: str
    base_mb: float
    data_mb: float
    params_mb: float
    activations_mb: float
    params: int

    @property
    def total_mb(self) -> int:
        """The whole estimate, rounded up to a whole MB (what ``mem_mb`` requests)."""
        return int(math.ceil(self.base_mb + self.data_mb + self.params_mb + self.activations_mb))

    def describe(self) -> str:
        """``12345 MB (parameters 160000 MB for 1.0e+10 parameters, activations ..., data ..., base ...)``."""
        return (f"{self.total_mb} MB (parameters {self.params_mb:.0f} MB for {self.params:.2g} parameters, "
                f"activations {self.activations_mb:.0f} MB, data {self.data_mb:.0f} MB, "
                f"process {self.base_mb:.0f} MB)")


def _data_mb(dataset: str, data: Mapping[str, Any] | None) -> tuple[float, tuple[int, ...], int]:
    shape, classes = dataset_shape(dataset, data)
    sizes = split_sizes(dataset, data)
    return DATA_COPIES * 4 * (sizes["train"] + sizes["test"]) * math.prod(shape) / MB, shape, classes


def train_estimate(dataset: str, arch: str, width: int, model: Mapping[str, Any] | None,
                   training: TrainingSettings | Mapping[str, Any] | None,
                   data: Mapping[str, Any] | None = None) -> Estimate:
    """Peak memory of a ``train`` job (also used for ``lmc`` and ``rotation``, which load the
    same data and network and train or evaluate it)."""
    training = TrainingSettings.coerce(training)
    data_mb, shape, classes = _data_mb(dataset, data)
    g = geometry(arch, width, shape, classes, model)
    states = OPTIMIZER_STATES.get(str(training.optimizer), 2)
    params_mb = 4 * g.params * (PARAM_COPIES + states) / MB
    batch = int(training.batch_size)
    eval_batch = int(training.eval_batch_size)
    train_acts = 4 * batch * sum(g.layer_elems) * SAVED_PER_LAYER.get(arch, IMPORTED_SAVED_PER_LAYER)
    eval_acts = 4 * eval_batch * max(g.layer_elems) * 3
    return Estimate("train", BASE_MB, data_mb, params_mb, max(train_acts, eval_acts) / MB, g.params)


def extract_estimate(dataset: str, arch: str, width: int, model: Mapping[str, Any] | None,
                     extract: ExtractSettings | Mapping[str, Any] | None,
                     data: Mapping[str, Any] | None = None) -> Estimate:
    """Peak memory of an ``extract`` job: the data, the network twice (model and loaded state),
    every layer of one batch of ``chunk_rows`` samples three times (all layers: an upper bound
    when ``layers`` names fewer). ``max_samples`` does not enter: the loader holds both whole splits."""
    extract = ExtractSettings.coerce(extract)
    data_mb, shape, classes = _data_mb(dataset, data)
    g = geometry(arch, width, shape, classes, model)
    rows = int(extract.chunk_rows)
    acts = 4 * rows * sum(g.layer_elems) * 3
    return Estimate("extract", BASE_MB, data_mb, 4 * g.params * 2 / MB, acts / MB, g.params)


def request_mb(estimate: Estimate) -> int:
    """A job's ``mem_mb`` resource: its estimate times :data:`REQUEST_HEADROOM`, rounded up to 100 MB."""
    return int(math.ceil(estimate.total_mb * REQUEST_HEADROOM / 100) * 100)


def machine_memory_mb() -> int:
    """Memory this process may use, in MB: physical memory, or the cgroup's limit if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // MB
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            text = fh.read().strip()
        if text.isdigit():
            total = min(total, int(text) // MB)
    except OSError:
        pass
    return int(total)
