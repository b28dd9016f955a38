"""Every config section's settings, each a frozen dataclass that owns its defaults.

One class per section of the config (``sweep.training``, ``sweep.extract``, ``moments``,
``measures``, ``lmc``, ``rotation``, ``cka_layers``); a default is written once, here, as the
field's default. :func:`convergent.sweep.plan_sweep` builds them once from the (schema-checked)
config: the per-experiment sections on each :class:`~convergent.sweep.Experiment`, the others on
the :class:`~convergent.sweep.Sweep` (:class:`SweepSettings`). A rule passes a job the section
as plain data (:meth:`Section.as_dict`, complete: Snakemake reruns a job whose settings changed,
a default included) and the job's script turns it back into the object
(:meth:`Section.from_mapping`). The schema (``schemas/config.schema.yaml``) validates; where it
states a default, ``tests/test_settings.py`` checks it equals the field's.

Sequences are stored as tuples (frozen); :meth:`Section.as_dict` gives lists back, so what a
job hands to the library functions is what the config said.

Pure Python, imported when the sweep is planned: nothing heavy is imported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from convergent.config import ConfigError

S = TypeVar("S", bound="Section")

#: a view wider than this (features) is compared through the n × n Gram matrices instead of the
#: d × d moments (d × d float64 sums: ~3.5 GB at 4096); the moments pass and the layer × layer
#: measures share it
MAX_PRIMAL_FEATURES = 4096
#: measure families; the families whose rows get a chance level from the null worlds and an SE
#: over example blocks leave out kernels, sparse and spectral (tens of times the rest per replicate)
MEASURE_FAMILIES = ("cka", "matching", "kernels", "sparse", "spectral", "subspace", "alignment",
                    "cca", "shape", "linreg", "rsa")
REPLICATE_FAMILIES = ("cka", "matching", "subspace", "alignment", "cca", "shape", "linreg", "rsa")
#: every LMC variant, in the order the tables list them (convergent.weights.lmc.VARIANTS)
LMC_VARIANTS = ("naive", "bn_reset", "permuted_activation", "permuted_weight", "permuted_activation_bn_reset",
                "permuted_weight_bn_reset", "repair", "permuted_activation_repair", "permuted_weight_repair")


def _freeze(value: Any) -> Any:
    """Lists (nested too) as tuples, mappings as plain dicts of frozen values."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _freeze(v) for k, v in value.items()}
    return value


def _thaw(value: Any) -> Any:
    """The inverse of :func:`_freeze`: tuples as lists, for YAML, JSON and the library functions."""
    if isinstance(value, (list, tuple)):
        return [_thaw(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Section:
    """A config section: its keys are the fields, its defaults the fields' defaults."""

    #: the section's key path in the config, for messages
    KEY: ClassVar[str] = ""

    @classmethod
    def from_mapping(cls: type[S], values: Mapping[str, Any] | None = None) -> S:
        """The section from a config mapping; a key left out gets the field's default, an unknown
        key raises :class:`~convergent.config.ConfigError` naming the section and the allowed keys."""
        values = dict(values or {})
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"{cls.KEY}: unknown key{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))}. "
                              f"Allowed keys here: {', '.join(sorted(known))}")
        return cls(**{k: _freeze(v) for k, v in values.items()})

    @classmethod
    def coerce(cls: type[S], value: S | Mapping[str, Any] | None) -> S:
        """``value`` itself if it is this section, else :meth:`from_mapping` of it (a job called
        outside the pipeline may pass a partial mapping; the defaults are still this class's)."""
        return value if isinstance(value, cls) else cls.from_mapping(value)

    def as_dict(self) -> dict[str, Any]:
        """Every key with its value, as plain data (lists, dicts): a job's Snakemake params."""
        return {f.name: _thaw(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class TrainingSettings(Section):
    """``sweep.training`` (and ``overrides[].training``): how every run of an experiment is
    optimised. :class:`convergent.nets.train.TrainConfig` takes its defaults from here and adds what
    is not a config key (the device, the step schedule's shape)."""

    KEY: ClassVar[str] = "sweep.training"

    epochs: int = 30
    batch_size: int = 64
    eval_batch_size: int = 1024    # images per batch of the per-epoch evaluation (memory, not results)
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"


@dataclass(frozen=True)
class ExtractSettings(Section):
    """``sweep.extract``: which images the activation stores hold and how they are written."""

    KEY: ClassVar[str] = "sweep.extract"

    split: str = "test"                 # representations are compared on held-out data
    chunk_rows: int = 256
    max_samples: int | None = None      # None: the whole split
    compression: str = "lz4"
    chunk_features: int = MAX_PRIMAL_FEATURES   # wider layers get 2-D chunks of about this many features


@dataclass(frozen=True)
class MomentSettings(Section):
    """``moments``: the streaming moments pass (:func:`convergent.moments.streaming_moments`)."""

    KEY: ClassVar[str] = "moments"

    views: tuple[str, ...] = ("positions", "flatten", "pool")   # conv views computed in the one pass
    max_features: int = MAX_PRIMAL_FEATURES   # wider views use the dual (n × n Gram) form
    max_gram_rows: int | None = 20000   # dual form: more rows -> a declared, seeded row subsample of this size
    subsample_size: int = 1000          # rows kept (as Gram matrices) for kernel measures
    subsample_seed: int = 0
    minibatch_size: int = 256           # Nguyen et al. minibatch CKA; 0 disables
    minibatch_max: int | None = 64      # per fold: at most this many evenly spaced minibatches get HSIC
    minibatch_views: tuple[str, ...] = ("flatten",)   # conv views that get minibatch HSIC (dense: always)
    alignment: bool = True              # accumulate row-normalised [x,1] moments (Imani et al.)
    alignment_views: tuple[str, ...] = ("flatten",)   # conv views that get them (dense layers: always)
    precision: str = "mixed"            # float32 block products + float64 accumulation; or "float64"
    images_per_chunk: int | None = None   # default: the stores' Zarr chunking
    blas_threads: int | None = 1        # BLAS threads during the pass (None: leave as is)
    threads: int = 2                    # 2: the two folds are read and accumulated in two threads
    # replicates (convergent.moments.replicates): chance levels and the SE over examples
    null_permutations: int = 10         # null worlds per (pair, layer, view); 0: no permutation nulls
    null_seed: int = 0
    example_blocks: int = 8             # blocks of test images, half per fold (even, >= 4); 0: none
    replicate_max_gib: float = 2.0      # memory a view may use to keep its rows for the replicates


#: the view each measure family reads for a conv layer (dense layers look the same in every view)
MEASURE_VIEWS = {"cka": "flatten", "kernels": "flatten", "alignment": "flatten", "matching": "positions",
                 "sparse": "positions", "spectral": "positions", "subspace": "positions",
                 "cca": "flatten", "shape": "flatten", "linreg": "flatten", "rsa": "flatten"}


@dataclass(frozen=True)
class MeasureSettings(Section):
    """``measures``: :func:`convergent.measures.compute_measures`. ``views`` given in the config
    replaces the view of the families it names; the others keep theirs."""

    KEY: ClassVar[str] = "measures"

    enabled: tuple[str, ...] = MEASURE_FAMILIES
    views: dict[str, str] = field(default_factory=lambda: dict(MEASURE_VIEWS))
    dead_tol: float = 1e-8              # dead if variance <= dead_tol * max variance in the layer ...
    dead_atol: float = 0.0              # ... or <= dead_atol
    sorted_grid: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)   # rank fractions, matched_corr_sorted
    rbf_sigma_scales: tuple[float, ...] = (0.2, 0.4, 0.8)   # σ = t × median pairwise distance (subsample)
    knn_k: tuple[int, ...] = (10,)      # mutual k-NN (subsample)
    lasso_alphas: tuple[float, ...] = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
    lasso_max_targets: int | None = 64  # B units predicted (evenly spaced alive units); None = all
    lasso_max_iter: int = 1000
    lasso_tol: float = 1e-4             # sklearn's duality-gap tolerance (targets are standardised)
    spectral_k: tuple[int, ...] = (2, 8, 32)
    spectral_seed: int = 0
    subspace_eps: tuple[float, ...] = (0.15, 0.2, 0.25, 0.3, 0.5)
    subspace_rank_tol: float | None = None   # pivoted-Cholesky stop; None: 1e-10 float64, 1e-6 mixed moments
    subspace_norm_tol: float = 1e-16    # neurons with ‖z‖ <= this are unmatched
    minimal_eps: tuple[float, ...] = (0.25,)   # ε values for which minimal matches are computed (costly)
    minimal_max_neurons: int = 8        # neurons whose minimal match is computed, per ε
    alignment_rank_tol: float = 1e-10   # directions with s² <= tol · s₁² are dropped
    alignment_fraction: float = 0.9     # alignment_k_a/b = smallest k with A(k) >= this
    cca_ridge: float = 0.0              # > 0: regularised CCA/PWCCA; 0: plain CCA
    cca_singular_tol: float | None = None   # covariance singular below tol × largest eigenvalue; None: by precision
    svcca_variance_kept: tuple[float, ...] = (0.99,)   # SVCCA keeps directions explaining this fraction
    blas_threads: int | None = 1        # small dense problems run far slower multi-threaded when oversubscribed
    null_families: tuple[str, ...] = REPLICATE_FAMILIES   # rows that get a chance level from the null worlds
    se_families: tuple[str, ...] = REPLICATE_FAMILIES     # rows that get an SE from the example blocks

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None = None) -> MeasureSettings:
        values = dict(values or {})
        if "views" in values:
            values["views"] = {**MEASURE_VIEWS, **dict(values["views"] or {})}
        return super().from_mapping(values)


@dataclass(frozen=True)
class LMCSettings(Section):
    """``lmc``: linear mode connectivity of the cross-seed and data-order pairs. How θ(α) is
    evaluated (:class:`convergent.weights.lmc.EvalOptions`; README "LMC cost"): None sample
    counts or coarse_alphas give the full computation."""

    KEY: ClassVar[str] = "lmc"

    enabled: bool = True
    alphas: int = 11
    variants: tuple[str, ...] = LMC_VARIANTS
    eval_batch_size: int | str = "auto"
    calib_batch_size: int = 1024
    train_samples: int | None = 500
    test_samples: int | None = None
    calib_samples: int | None = 500
    coarse_alphas: int | None = 7
    subset_seed: int = 0


@dataclass(frozen=True)
class RotationSettings(Section):
    """``rotation``: Brown et al.'s privileged-basis test on each reference run."""

    KEY: ClassVar[str] = "rotation"

    enabled: bool = True
    layers: Any = "all"                 # all, [names], or {arch: all | [names]}
    strengths: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
    retrain_epochs: int = 5
    lr: float = 0.01
    # the diagnostics (rotated_test_* before retraining, retrained_train_acc) on a fixed seeded
    # subset of this many images of their split (None: all); the result, retrained_test_*, uses all
    diagnostic_samples: int | None = 500
    # only speed: eval batch (auto, see convergent.weights.evaluation) and the memory the frozen
    # prefix's outputs may take (convergent.weights.rotation.prefix)
    eval_batch_size: int | str = "auto"
    cache_mb: int | None = 2048


@dataclass(frozen=True)
class LayersSettings(Section):
    """``cka_layers``: every layer of one network against every layer of another (Kornblith et
    al.'s layer × layer measures and layer identification, :func:`convergent.jobs.cross_layer_cka`)."""

    KEY: ClassVar[str] = "cka_layers"

    seeds: int = 3                      # every cross-seed pair of the first this-many seeds of a cell:
                                        # three seeds are the fewest an interval over seeds rests on
    view: str = "flatten"
    max_samples: int | None = 2000      # the first this-many images (None: all)
    max_features: int = MAX_PRIMAL_FEATURES   # wider layers use the n × n Gram (CCA, matching unavailable)
    kernel_samples: int = 500           # rows of the RBF kernels
    rbf_sigma_scales: tuple[float, ...] = (0.2, 0.4, 0.8)
    svcca_variance_kept: float = 0.99
    match_max_features: int = 1024      # the Hungarian matching is O(d³): unavailable above this width
    dead_tol: float = 1e-8

    def measure_params(self) -> dict[str, Any]:
        """The keys :func:`convergent.measures.crosslayer.cross_layer_measures` reads."""
        return {k: v for k, v in self.as_dict().items() if k not in ("seeds", "view", "max_samples")}


#: the sweep-wide sections, by config key
SWEEP_SECTIONS: dict[str, type[Section]] = {"moments": MomentSettings, "measures": MeasureSettings,
                                            "lmc": LMCSettings, "rotation": RotationSettings,
                                            "cka_layers": LayersSettings}
#: the per-experiment sections (under ``sweep`` and ``overrides[]``), by key
EXPERIMENT_SECTIONS: dict[str, type[Section]] = {"training": TrainingSettings, "extract": ExtractSettings}


@dataclass(frozen=True)
class SweepSettings:
    """The sweep-wide sections, built once when the sweep is planned."""

    moments: MomentSettings = field(default_factory=MomentSettings)
    measures: MeasureSettings = field(default_factory=MeasureSettings)
    lmc: LMCSettings = field(default_factory=LMCSettings)
    rotation: RotationSettings = field(default_factory=RotationSettings)
    cka_layers: LayersSettings = field(default_factory=LayersSettings)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SweepSettings:
        return cls(**{key: SWEEP_SECTIONS[key].from_mapping(config.get(key)) for key in SWEEP_SECTIONS})
