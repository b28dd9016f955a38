"""The sweep: which runs, pairs and layers a config asks for, and the checks the schema cannot make.

A *run* is one trained network ``(dataset, arch, width, frozen_k, seed)``. A *pair*
is two runs of the same experiment cell that differ only in seed. Every pair is
compared layer by layer under one of three *controls*:

* ``cross``: trained networks of two different seeds (the quantity of interest);
* ``floor``: the untrained (initial) networks of the same two seeds;
* ``ceiling``: a trained network with itself (the reference seed's, one per cell);
  measures that fit a map do so on one half of the data and evaluate on the other;
* ``data_order`` (optional, ``controls.data_order``): the reference seed's trained network
  against networks with the *same initial weights* whose minibatch order (and any other
  training randomness) comes from another seed, the *order seed* (Frankle et al. 2020's
  instability analysis). What SGD noise alone leaves: the empirical ceiling for "do
  different initialisations converge to one basis".

Every run has an ``order_seed``; for an ordinary run it equals its seed and its path is
unchanged (``.../s{seed}``). A data-order run lives at ``.../s{seed}o{order_seed}``.

The config has already passed the JSON schema when it arrives here
(:func:`convergent.config.load_sweep` is the one way in: schema, then this module); this module
adds the checks that need knowledge of the architectures (layer counts and names), the
overrides merge, and builds every section's settings (:mod:`convergent.settings`) once. It is
pure Python and cheap, because the Snakefile calls it on every invocation, dry runs included.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from convergent.config import ConfigError
from convergent.nets.archspec import IMPORTED_ROTATION_REFUSAL, arch_options, is_imported, layer_names, rotation_layers
from convergent.nets.dataspec import SHAPES32_LIMITS, dataset_options, dataset_shape, split_sizes
from convergent.nets.dataspec import is_imported as is_imported_dataset
from convergent.settings import EXPERIMENT_SECTIONS, ExtractSettings, SweepSettings, TrainingSettings

CONTROLS = ("cross", "floor", "ceiling", "data_order")
#: which saved network state each control compares
CONTROL_STATE = {"cross": "trained", "floor": "init", "ceiling": "trained", "data_order": "trained"}
#: controls a config gets unless it switches them on (every other control defaults to on)
OFF_BY_DEFAULT = frozenset({"data_order"})
#: controls whose pairs linear mode connectivity compares
LMC_CONTROLS = ("cross", "data_order")
EXPERIMENT_KEYS = ("widths", "frozen_k", "seeds", "reference_seed", "frozen_from", "layers",
                   "model", "training", "extract")

#: the columns that place a run in the sweep, in the tables' order
RUN_COLUMNS = ("dataset", "arch", "width", "frozen_k", "seed", "order_seed")
#: the columns that place a pair in the sweep, in the tables' order (``frozen_from`` after
#: ``frozen_k`` where a table has it: measures)
PAIR_COLUMNS = ("dataset", "arch", "width", "frozen_k", "seed_a", "seed_b", "control", "order_seed_a",
                "order_seed_b")


def run_label(seed: int, order_seed: int | None = None) -> str:
    """``s{seed}``, or ``s{seed}o{order_seed}`` when the minibatch order comes from another seed."""
    return f"s{seed}" if order_seed is None or order_seed == seed else f"s{seed}o{order_seed}"


def parse_run_label(label: str) -> tuple[int, int]:
    """(seed, order_seed) of a label ``{seed}`` or ``{seed}o{order}`` (without the leading ``s``)."""
    seed, _, order = str(label).partition("o")
    return int(seed), int(order) if order else int(seed)


@dataclass(frozen=True, order=True)
class Run:
    """One trained network. ``seed`` draws the initial weights; ``order_seed`` (default:
    ``seed``) draws the minibatch order and any other randomness of training."""

    dataset: str
    arch: str
    width: int
    frozen_k: int
    seed: int
    order_seed: int | None = None

    def __post_init__(self) -> None:
        if self.order_seed is None:
            object.__setattr__(self, "order_seed", self.seed)

    @property
    def path(self) -> str:
        """Directory of this run under ``results/``."""
        return (f"runs/{self.dataset}/{self.arch}/w{self.width}/f{self.frozen_k}/"
                f"{run_label(self.seed, self.order_seed)}")

    @classmethod
    def from_wildcards(cls, wildcards: Any) -> Run:
        """The run of a rule's wildcards ``dataset, arch, width, frozen, seed`` (and ``order`` for a
        data-order run); ``frozen`` defaults to 0 for a rule without it (rotation: reference runs)."""
        order = getattr(wildcards, "order", None)
        return cls(wildcards.dataset, wildcards.arch, int(wildcards.width), int(getattr(wildcards, "frozen", 0)),
                   int(wildcards.seed), None if order is None else int(order))

    @classmethod
    def coerce(cls, run: Run | Mapping[str, Any]) -> Run:
        """``run`` itself, or the run of a mapping with the keys of :data:`RUN_COLUMNS`
        (``order_seed`` optional)."""
        if isinstance(run, cls):
            return run
        order = run.get("order_seed")
        return cls(str(run["dataset"]), str(run["arch"]), int(run["width"]), int(run["frozen_k"]),
                   int(run["seed"]), None if order is None else int(order))

    def coordinates(self) -> dict[str, Any]:
        """The run's columns of a table (:data:`RUN_COLUMNS`, in order)."""
        return {key: getattr(self, key) for key in RUN_COLUMNS}


@dataclass(frozen=True, order=True)
class Pair:
    dataset: str
    arch: str
    width: int
    frozen_k: int
    control: str
    seed_a: int
    seed_b: int
    order_seed_a: int | None = None
    order_seed_b: int | None = None

    def __post_init__(self) -> None:
        for side in "ab":
            if getattr(self, f"order_seed_{side}") is None:
                object.__setattr__(self, f"order_seed_{side}", getattr(self, f"seed_{side}"))

    @property
    def label(self) -> str:
        """``s{a}-s{b}``; a side whose order seed differs from its seed reads ``s{seed}o{order}``."""
        return f"{run_label(self.seed_a, self.order_seed_a)}-{run_label(self.seed_b, self.order_seed_b)}"

    @property
    def path(self) -> str:
        """Directory of this pair's per-layer files under ``results/``."""
        return (f"pairs/{self.dataset}/{self.arch}/w{self.width}/f{self.frozen_k}/"
                f"{self.control}/{self.label}")

    @property
    def state(self) -> str:
        return CONTROL_STATE[self.control]

    def runs(self) -> tuple[Run, Run]:
        return (Run(self.dataset, self.arch, self.width, self.frozen_k, self.seed_a, self.order_seed_a),
                Run(self.dataset, self.arch, self.width, self.frozen_k, self.seed_b, self.order_seed_b))

    @property
    def group_seed(self) -> int:
        """The seed whose arrival in ``sweep.seeds`` creates this pair: the later seed of a seed
        pair (the own seed of a ceiling pair), the order seed of a data-order pair. The
        comparison jobs are one per (cell, group seed): see :class:`PairGroup`."""
        return self.order_seed_b if self.control == "data_order" else max(self.seed_a, self.seed_b)

    @property
    def key(self) -> str:
        """``{control}/{label}``: the pair's place inside its group's outputs."""
        return f"{self.control}/{self.label}"

    def coordinates(self, frozen_from: str | None = None) -> dict[str, Any]:
        """The pair's columns of a table (:data:`PAIR_COLUMNS`, in order), with ``frozen_from``
        after ``frozen_k`` when given (the measures tables carry it)."""
        out = {key: getattr(self, key) for key in PAIR_COLUMNS[:4]}
        if frozen_from is not None:
            out["frozen_from"] = frozen_from
        return {**out, **{key: getattr(self, key) for key in PAIR_COLUMNS[4:]}}


@dataclass(frozen=True)
class PairGroup:
    """Every pair of one cell (dataset, arch, width, frozen_k) that seed ``seed`` completes
    (:attr:`Pair.group_seed`): its cross and floor pairs with each earlier seed, its data-order
    pair, and the ceiling pair if it is the reference seed.

    The comparison rules (moments, measures, LMC) run one job per group instead of one per
    pair: the start-up of a job is paid once for all of them, and adding a seed to a sweep
    adds a group without touching the existing ones (a seed inserted below existing ones
    changes the groups of the later seeds, which then rerun).
    """

    dataset: str
    arch: str
    width: int
    frozen_k: int
    seed: int
    pairs: tuple[Pair, ...]

    @property
    def cell(self) -> str:
        return f"{self.dataset}/{self.arch}/w{self.width}/f{self.frozen_k}"

    @property
    def path(self) -> str:
        """Directory of the group's moments and measures under ``results/``."""
        return f"pairs/{self.cell}/s{self.seed}"

    @property
    def lmc_path(self) -> str:
        """Directory of the group's LMC tables under ``results/``."""
        return f"lmc/{self.cell}/s{self.seed}"

    def lmc_pairs(self) -> tuple[Pair, ...]:
        """The pairs LMC compares: cross-seed and data-order (the others share weights or are untrained)."""
        return tuple(p for p in self.pairs if p.control in LMC_CONTROLS)

    def runs(self) -> list[Run]:
        """Every run any pair of the group reads, sorted."""
        return sorted({r for p in self.pairs for r in p.runs()})


@dataclass
class Experiment:
    """One (dataset, arch) cell of the sweep with its settings after defaults and overrides."""

    dataset: str
    arch: str
    widths: list[int]
    frozen_k: list[int]
    seeds: list[int]
    reference_seed: int
    frozen_from: str
    layers: list[str]
    model: dict[str, Any]
    training: TrainingSettings
    extract: ExtractSettings
    all_layers: list[str] = field(default_factory=list)
    #: the dataset's options (config ``data.<dataset>``, defaults filled in; {} for most)
    data: dict[str, Any] = field(default_factory=dict)
    #: the layers the rotation test runs on (``rotation.layers`` resolved; None: not planned)
    rotation_layers: list[str] | None = None

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.arch}"

    def runs(self) -> list[Run]:
        return [Run(self.dataset, self.arch, w, f, s)
                for w, f, s in itertools.product(self.widths, self.frozen_k, self.seeds)]

    def reference_run(self, run: Run) -> Run:
        """The frozen_k = 0 network whose first layers a frozen run copies."""
        return Run(self.dataset, self.arch, run.width, 0, self.reference_seed)

    def data_settings(self) -> dict[str, Any]:
        """The dataset's options for every job that loads it (train, extract, lmc, rotation), so
        all stages see the same data; only when it has any, so other datasets' params stay as they were."""
        return {"data": self.data} if self.data else {}

    def train_params(self) -> dict[str, Any]:
        """The settings a train (and rotation) job gets, as plain data (its Snakemake params:
        a change, a default's included, reruns the job)."""
        return {"model": self.model, "training": self.training.as_dict(), "frozen_from": self.frozen_from,
                "reference_seed": self.reference_seed, **self.data_settings()}

    def extract_params(self) -> dict[str, Any]:
        """The settings an extract (and lmc) job gets, as plain data."""
        return {"layers": self.layers, "model": self.model, "extract": self.extract.as_dict(),
                **self.data_settings()}


@dataclass
class Sweep:
    experiments: list[Experiment]
    controls: list[str]
    #: the sweep-wide sections (moments, measures, lmc, rotation, cka_layers)
    settings: SweepSettings = field(default_factory=SweepSettings)

    def experiment(self, dataset: str, arch: str) -> Experiment:
        for exp in self.experiments:
            if exp.dataset == dataset and exp.arch == arch:
                return exp
        raise KeyError(f"no experiment for dataset={dataset!r}, arch={arch!r}")

    def runs(self) -> list[Run]:
        """Every run the sweep needs: the configured ones, the reference runs they copy and,
        with the data-order control, the order-seed runs its pairs compare."""
        needed: set[Run] = set()
        for exp in self.experiments:
            for run in exp.runs():
                needed.add(run)
                if run.frozen_k > 0:
                    needed.add(exp.reference_run(run))
        for pair in self.pairs():
            if pair.control == "data_order":
                needed.update(pair.runs())
        return sorted(needed)

    def pairs(self) -> list[Pair]:
        out: list[Pair] = []
        for exp in self.experiments:
            for w, f in itertools.product(exp.widths, exp.frozen_k):
                for control in self.controls:
                    if control == "data_order":
                        own, orders = data_order_seeds(exp.seeds, exp.reference_seed)
                        out.extend(Pair(exp.dataset, exp.arch, w, f, control, own, own, own, o) for o in orders)
                        continue
                    out.extend(Pair(exp.dataset, exp.arch, w, f, control, a, b)
                               for a, b in control_seed_pairs(control, exp.seeds, exp.reference_seed))
        return out

    def pair_groups(self) -> list[PairGroup]:
        """The pairs grouped per (cell, :attr:`Pair.group_seed`), cells and seeds in order."""
        groups: dict[tuple[str, str, int, int, int], list[Pair]] = {}
        for p in self.pairs():
            groups.setdefault((p.dataset, p.arch, p.width, p.frozen_k, p.group_seed), []).append(p)
        return [PairGroup(*key, pairs=tuple(pairs)) for key, pairs in groups.items()]

    def pair_layers(self) -> list[tuple[Pair, str]]:
        return [(p, layer) for p in self.pairs()
                for layer in self.experiment(p.dataset, p.arch).layers]


def control_seed_pairs(control: str, seeds: Iterable[int], reference_seed: int) -> list[tuple[int, int]]:
    """Seed pairs compared under ``control``.

    ``cross`` and ``floor``: every unordered pair of seeds. ``ceiling``: one self-pair per
    cell, the reference seed's (or the first seed's if the reference is not in ``seeds``):
    a self-pair has no seed-to-seed spread worth paying a job per seed for.
    """
    seeds = sorted(seeds)
    if control == "ceiling":
        own = reference_seed if reference_seed in seeds else seeds[0]
        return [(own, own)]
    return list(itertools.combinations(seeds, 2))


def data_order_seeds(seeds: Iterable[int], reference_seed: int) -> tuple[int, list[int]]:
    """(initialisation seed, order seeds) of the data-order control in one cell.

    The initial weights are the reference seed's (the first seed's if the reference is not
    in ``seeds``), as for the ceiling; each *other* seed of the cell gives one network with
    those weights and its own minibatch order, paired with the reference network itself
    (whose order seed is its seed). So a cell with s seeds has s − 1 data-order pairs,
    resampled like seed pairs.
    """
    seeds = sorted(seeds)
    own = reference_seed if reference_seed in seeds else seeds[0]
    return own, [s for s in seeds if s != own]


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: mappings merge key by key, everything else is replaced."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def plan_sweep(config: Mapping[str, Any]) -> Sweep:
    """Expand a schema-valid config into experiments, checking what the schema cannot.

    Raises :class:`ConfigError` naming the offending key and the allowed values; among the
    checks, ``extract.max_samples`` against the split it reads and every width's estimated
    job memory against ``max_mem_mb`` (or this machine's memory, :func:`memory_limit_mb`).
    """
    sweep_cfg = config["sweep"]
    data_options = _data_options(config, sweep_cfg["datasets"])
    defaults = {k: sweep_cfg[k] for k in EXPERIMENT_KEYS if k in sweep_cfg}
    overrides = list(config.get("overrides") or [])
    experiments = []
    limit = memory_limit_mb(config)
    for dataset, arch in itertools.product(sweep_cfg["datasets"], sweep_cfg["archs"]):
        settings = dict(defaults)
        for ov in overrides:
            if ov.get("dataset", dataset) == dataset and ov.get("arch", arch) == arch:
                settings = _merge(settings, {k: v for k, v in ov.items() if k not in ("dataset", "arch")})
        exp = _experiment(dataset, arch, settings, f"experiment {dataset}/{arch}", data_options[dataset])
        _check_split_size(exp)
        _check_memory(exp, *limit)
        experiments.append(exp)
    for i, ov in enumerate(overrides):
        for key, allowed in (("dataset", sweep_cfg["datasets"]), ("arch", sweep_cfg["archs"])):
            if key in ov and ov[key] not in allowed:
                raise ConfigError(f"overrides[{i}].{key} = {ov[key]!r} matches no experiment; "
                                  f"allowed: {', '.join(allowed)} (sweep.{key}s)")
    settings = SweepSettings.from_config(config)
    _check_rotation(settings.rotation.as_dict(), experiments, sweep_cfg["archs"])
    controls = [c for c in CONTROLS if (config.get("controls") or {}).get(c, c not in OFF_BY_DEFAULT)]
    if "cross" not in controls:
        raise ConfigError("controls.cross must stay true: cross-seed pairs are what the sweep measures")
    return Sweep(experiments, controls, settings)


def _check_rotation(rotation: Mapping[str, Any], experiments: list[Experiment], archs: list[str]) -> None:
    """Every ``rotation.layers`` entry must be a rotatable layer of each architecture it applies to."""
    if not rotation["enabled"]:
        return
    spec = rotation["layers"]
    for exp in experiments:
        if is_imported(exp.arch) and not (isinstance(spec, Mapping) and spec.get(exp.arch) == []):
            raise ConfigError(f"rotation.enabled: experiment {exp.key}: {IMPORTED_ROTATION_REFUSAL}. Set "
                              f"rotation.enabled: false, or (beside built-in architectures) leave this one out of "
                              f"the test with rotation.layers: {{{exp.arch}: []}}")
    if isinstance(spec, Mapping):
        extra = [arch for arch in spec if arch not in archs]
        if extra:
            raise ConfigError(f"rotation.layers has entries for {extra}, which are not in the sweep; "
                              f"allowed: {', '.join(archs)} (sweep.archs)")
    for exp in experiments:
        try:
            exp.rotation_layers = rotation_layers(exp.arch, exp.model, spec)
        except ValueError as err:
            hint = ("; a list applies to every architecture of the sweep, a mapping {arch: [layers]} "
                    "chooses per architecture") if not isinstance(spec, (str, Mapping)) and len(archs) > 1 else ""
            raise ConfigError(f"experiment {exp.key}: {err}{hint}") from err
    if not any(exp.rotation_layers for exp in experiments):
        raise ConfigError("rotation.layers leaves no layer of any experiment to rotate; "
                          "set rotation.enabled: false")


def _data_options(config: Mapping[str, Any], datasets: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Each dataset's options (config ``data``) with defaults, checked; options of a dataset the
    sweep does not use are still checked, so a typo is caught before it matters."""
    section = dict(config.get("data") or {})
    try:
        out = {name: dataset_options(name, section.get(name)) for name in sorted({*datasets, *section})}
        for name in datasets:
            if is_imported_dataset(name):   # import and call the loader now: its errors stop planning
                split_sizes(name, out[name])
    except ValueError as err:
        raise ConfigError(str(err)) from err
    return out


def _check_split_size(exp: Experiment) -> None:
    """``extract.max_samples`` must fit the split the extract stage reads (``extract.split``) of
    this dataset, at its configured size: otherwise the stores would silently hold fewer rows."""
    wanted = exp.extract.max_samples
    split = exp.extract.split
    have = split_sizes(exp.dataset, exp.data)[split]
    if not wanted or wanted <= have:
        return
    if exp.dataset == "shapes32":
        key = "n_test" if split == "test" else "n_train"
        raise ConfigError(f"data.shapes32.{key} = {exp.data[key]} does not fit experiment "
                          f"{exp.key}: extract.max_samples = {wanted} rows of the {split} split are "
                          f"extracted; allowed: data.shapes32.{key} in {wanted}..{SHAPES32_LIMITS[key][1]} "
                          f"(or a smaller extract.max_samples)")
    raise ConfigError(f"extract.max_samples = {wanted} does not fit experiment {exp.key}: the {split} split "
                      f"of {exp.dataset} has {have} rows (extract.split = {split}); allowed: "
                      f"extract.max_samples in 1..{have}, or null for the whole split")


def memory_limit_mb(config: Mapping[str, Any]) -> tuple[int, str]:
    """(MB a job may use, where that number comes from): the config's ``max_mem_mb``, else
    this machine's memory (:func:`convergent.memory.machine_memory_mb`)."""
    from convergent.memory import machine_memory_mb

    if config.get("max_mem_mb"):
        return int(config["max_mem_mb"]), "max_mem_mb"
    return machine_memory_mb(), "this machine's memory (set max_mem_mb for the nodes that run the jobs)"


def job_estimates(exp: Experiment, width: int) -> list[Any]:
    """The memory estimates (:class:`convergent.memory.Estimate`) of the network jobs of one
    width of ``exp``: train (also lmc and rotation's) and extract."""
    from convergent.memory import extract_estimate, train_estimate

    return [train_estimate(exp.dataset, exp.arch, width, exp.model, exp.training, exp.data),
            extract_estimate(exp.dataset, exp.arch, width, exp.model, exp.extract, exp.data)]


def _check_memory(exp: Experiment, limit_mb: int, source: str) -> None:
    """Refuse a width whose train or extract job cannot fit ``limit_mb``, naming the key, the
    estimate and the largest width that fits."""
    for width in exp.widths:
        worst = max(job_estimates(exp, width), key=lambda e: e.total_mb)
        if worst.total_mb <= limit_mb:
            continue
        lo, hi = 0, width   # the largest width that fits: estimates grow with the width
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if max(e.total_mb for e in job_estimates(exp, mid)) <= limit_mb else (lo, mid)
        allowed = f"widths ≤ {lo}" if lo else "no width (lower training.batch_size or the data size)"
        raise ConfigError(f"sweep.widths: width {width} of experiment {exp.key} does not fit in memory: "
                          f"its {worst.job} job needs an estimated {worst.describe()}, more than the "
                          f"{limit_mb} MB of {source}; allowed for {exp.key}: {allowed}")


def _experiment(dataset: str, arch: str, s: Mapping[str, Any], where: str,
                data: Mapping[str, Any] | None = None) -> Experiment:
    model = dict((s.get("model") or {}).get(arch) or {})
    try:
        options = arch_options(arch, model)
        all_layers = layer_names(arch, options) if not is_imported(arch) else None
    except ValueError as err:
        raise ConfigError(f"{where}: model.{arch}: {err}") from err
    if all_layers is None:
        all_layers = _imported_layers(dataset, arch, int(min(s["widths"])), options, dict(data or {}), where)

    seeds = list(s["seeds"])
    if len(set(seeds)) < 2:
        raise ConfigError(f"{where}: seeds needs at least two distinct seeds to form a pair, got {seeds}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where}: seeds has duplicates: {seeds}")
    for key in ("widths", "frozen_k"):
        if len(set(s[key])) != len(s[key]):
            raise ConfigError(f"{where}: {key} has duplicates: {s[key]}")
    n_layers = len(all_layers)
    too_deep = [k for k in s["frozen_k"] if k > n_layers]
    if too_deep:
        raise ConfigError(f"{where}: frozen_k {too_deep} larger than the {n_layers} layers of {arch} "
                          f"({', '.join(all_layers)}); allowed: 0..{n_layers}")
    reference_seed = s.get("reference_seed")
    if reference_seed is None:
        reference_seed = seeds[0]

    layers = s.get("layers", "all")
    if layers == "all":
        layers = list(all_layers)
    else:
        unknown = [name for name in layers if name not in all_layers]
        if unknown:
            raise ConfigError(f"{where}: layers {unknown} unknown for {arch}; allowed: {', '.join(all_layers)}")
        layers = [name for name in all_layers if name in layers]  # keep depth order
    return Experiment(dataset=dataset, arch=arch, widths=list(s["widths"]), frozen_k=list(s["frozen_k"]),
                      seeds=seeds, reference_seed=int(reference_seed), frozen_from=s.get("frozen_from", "trained"),
                      layers=layers, model=options, all_layers=all_layers, data=dict(data or {}),
                      **{key: section.from_mapping(s.get(key)) for key, section in EXPERIMENT_SECTIONS.items()})


def _imported_layers(dataset: str, arch: str, width: int, options: Mapping[str, Any], data: Mapping[str, Any],
                     where: str) -> list[str]:
    """The layers of an imported architecture, from building it once on ``dataset``'s shape
    (:func:`convergent.nets.models.probe`); whatever fails (the import, the factory, a layer name)
    becomes one :class:`ConfigError` line naming the config key."""
    try:
        shape, classes = dataset_shape(dataset, data)
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None
    from convergent.nets.models import probe   # torch: only a sweep with an imported architecture pays it

    try:
        return list(probe(arch, width, shape, classes, options).layer_names)
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None
    except Exception as err:   # the user's factory raised: say which call failed
        first = str(err).splitlines()[0] if str(err) else ""
        raise ConfigError(f"{where}: sweep.archs: {arch} built with width={width}, num_classes={classes}, "
                          f"input_shape={shape}, **sweep.model.{arch} failed on a probe forward pass of zeros: "
                          f"{type(err).__name__}: {first}") from None
