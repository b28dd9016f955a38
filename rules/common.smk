# Shared helpers: the planned sweep, wildcard constraints and path builders.
import itertools
import re

from convergent.io import tree_bytes
from convergent.sweep import ConfigError, Pair, Run, plan_sweep

try:
    SWEEP = plan_sweep(config)
except ConfigError as err:
    raise WorkflowError(f"invalid config: {err}") from None

DATASETS = sorted({e.dataset for e in SWEEP.experiments})
ARCHS = sorted({e.arch for e in SWEEP.experiments})


wildcard_constraints:
    # re.escape: an import path (package.module:factory) has dots, which a regex reads as any character
    dataset="|".join(map(re.escape, DATASETS)),
    arch="|".join(map(re.escape, ARCHS)),
    width=r"\d+",
    frozen=r"\d+",
    seed=r"\d+",
    order=r"\d+",
    seed_a=r"\d+",
    seed_b=r"\d+",


def experiment_of(wildcards):
    return SWEEP.experiment(wildcards.dataset, wildcards.arch)


def run_of(wildcards):
    order = getattr(wildcards, "order", None)
    return Run(wildcards.dataset, wildcards.arch, int(wildcards.width), int(wildcards.frozen),
               int(wildcards.seed), None if order is None else int(order))


def reference_checkpoint(wildcards):
    """Frozen runs copy their first k layers from the reference run (trained or initial weights)."""
    run = run_of(wildcards)
    if run.frozen_k == 0:
        return []
    exp = experiment_of(wildcards)
    ref = exp.reference_run(run)
    name = "model.pt" if exp.frozen_from == "trained" else "init.pt"
    return f"results/{ref.path}/{name}"


def data_settings(exp):
    """The dataset's options (config ``data.<dataset>``) for every job that loads it, so all
    stages see the same data; only when it has any, so other datasets' params stay as they were."""
    return {"data": exp.data} if exp.data else {}


def training_params(wildcards):
    exp = experiment_of(wildcards)
    return {
        "model": exp.model,
        "training": exp.training,
        "frozen_from": exp.frozen_from,
        "reference_seed": exp.reference_seed,
        **data_settings(exp),
    }


def order_training_params(wildcards):
    """Settings of a data-order run: an ordinary run's plus the seed of its minibatch order."""
    return {**training_params(wildcards), "order_seed": int(wildcards.order)}


def extract_params(wildcards):
    exp = experiment_of(wildcards)
    return {"layers": exp.layers, "model": exp.model, "extract": exp.extract, **data_settings(exp)}


#: the comparison groups (one per cell and seed, see convergent.sweep.PairGroup), looked up by
#: the wildcards of rules moments, measures and lmc; built once, so planning stays linear
GROUPS = {(g.dataset, g.arch, g.width, g.frozen_k, g.seed): g for g in SWEEP.pair_groups()}


def group_of(wildcards):
    return GROUPS[(wildcards.dataset, wildcards.arch, int(wildcards.width), int(wildcards.frozen),
                   int(wildcards.seed))]


def store_of(pair, side):
    """The Zarr store of one side (0: a, 1: b) of ``pair``, in the state its control compares."""
    return f"results/{pair.runs()[side].path}/{pair.state}.zarr"


def group_pair_stores(wildcards):
    """{pair key (control/label): [store a, store b]} of the group, in the sweep's pair order."""
    return {p.key: [store_of(p, 0), store_of(p, 1)] for p in group_of(wildcards).pairs}


def group_stores(wildcards):
    """Every store the group's moments read, each once, in order of first use."""
    return list(dict.fromkeys(s for stores in group_pair_stores(wildcards).values() for s in stores))


#: a group whose first store holds less than this gets one thread for its moments: its pass
#: takes about a second per pair and should not hold a second core
MOMENTS_TWO_THREADS_MIN_BYTES = 256 * 2**20


def moments_threads(wildcards, input):
    """Cores of a moments job: ``moments.threads`` (one thread per fold) for big stores, else 1.
    Evaluated when the job is ready, so the stores exist (a dry run sees 0 bytes); one store is
    measured, the cell's stores having the same layers and sample count."""
    return config["moments"]["threads"] if tree_bytes(input[0]) >= MOMENTS_TWO_THREADS_MIN_BYTES else 1


def coordinates_of(pair, exp):
    """A pair's columns of the tidy measures and LMC tables (the layer columns are added per layer)."""
    return {"dataset": pair.dataset, "arch": pair.arch, "width": pair.width, "frozen_k": pair.frozen_k,
            "frozen_from": exp.frozen_from, "control": pair.control, "seed_a": pair.seed_a,
            "seed_b": pair.seed_b, "order_seed_a": pair.order_seed_a, "order_seed_b": pair.order_seed_b}


def group_coordinates(wildcards):
    """{pair key: the pair's table columns} of the group."""
    exp = experiment_of(wildcards)
    return {p.key: coordinates_of(p, exp) for p in group_of(wildcards).pairs}


def group_checkpoints(wildcards):
    """Every trained checkpoint the group's LMC pairs read, each once."""
    return list(dict.fromkeys(f"results/{r.path}/model.pt" for p in group_of(wildcards).lmc_pairs()
                              for r in p.runs()))


def group_lmc_pairs(wildcards):
    """{pair key: {checkpoints, variants, coordinates}} of the group's LMC pairs. A data-order pair
    gets the plain interpolation only (Frankle et al.'s instability): aligning a same-init pair by
    permutation or repairing its statistics answers nothing the plain barrier does not."""
    variants = list({**LMC_DEFAULTS, **config["lmc"]}["variants"])
    out = {}
    for p in group_of(wildcards).lmc_pairs():
        # the LMC tables' column order: the cell, the seeds, then the control and order seeds
        coords = {"dataset": p.dataset, "arch": p.arch, "width": p.width, "frozen_k": p.frozen_k,
                  "seed_a": p.seed_a, "seed_b": p.seed_b, "control": p.control,
                  "order_seed_a": p.order_seed_a, "order_seed_b": p.order_seed_b}
        out[p.key] = {"checkpoints": [f"results/{r.path}/model.pt" for r in p.runs()],
                      "variants": ["naive"] if p.control == "data_order" else variants,
                      "coordinates": coords}
    return out


def pair_layers(wildcards):
    """The layers a pair is compared on (the configured ones, in network order)."""
    return list(experiment_of(wildcards).layers)


def pair_layer_index(wildcards):
    """1-based depth of each compared layer among all layers of the architecture."""
    exp = experiment_of(wildcards)
    return {layer: exp.all_layers.index(layer) + 1 for layer in exp.layers}


from convergent.figures.kinds import FIGURE_NAMES, figure_kind
from convergent.jobs import CKA_LAYERS_DEFAULTS, LMC_DEFAULTS

CKA_LAYERS_PARAMS = dict(CKA_LAYERS_DEFAULTS)


def all_metrics(wildcards):
    return [f"results/{run.path}/metrics.json" for run in SWEEP.runs()]


def all_measure_tables(wildcards):
    return [f"results/{g.path}/measures.csv" for g in GROUPS.values()]


def figure_paths(ext="png"):
    """Every figure of the sweep: one file per (experiment, figure kind); the SVGs with ext="svg"."""
    return [f"results/figures/{exp.dataset}_{exp.arch}_{kind}.{ext}"
            for exp in SWEEP.experiments for kind in FIGURE_NAMES]


def figure_output(kind):
    """Output of rule `figures` for one figure kind, filed in the report under its question."""
    return report(f"results/figures/{{dataset}}_{{arch}}_{kind}.png", caption=f"../report/{kind}.rst",
                  category=figure_kind(kind).category, subcategory="{dataset} / {arch}",
                  labels={"figure": figure_kind(kind).title, "experiment": "{dataset} / {arch}"})


#: the layer × layer CKA compares every pair of the first this-many seeds of a cell: three seeds are
#: the fewest an interval over seeds rests on (kornblith_grounding, kornblith_cca; docs/uncertainty.md)
CKA_LAYERS_SEEDS = 3


def cka_layers_pairs():
    """The cross-seed pairs per (dataset, arch, width, frozen_k) for the layer × layer CKA: every
    pair of the first :data:`CKA_LAYERS_SEEDS` seeds. Cells with a single seed have none."""
    pairs = []
    for exp in SWEEP.experiments:
        seeds = sorted(exp.seeds)[:CKA_LAYERS_SEEDS]
        pairs += [Pair(exp.dataset, exp.arch, w, f, "cross", a, b)
                  for w in exp.widths for f in exp.frozen_k for a, b in itertools.combinations(seeds, 2)]
    return pairs


def all_cka_layer_tables(wildcards):
    return [f"results/layers/{p.dataset}/{p.arch}/w{p.width}/f{p.frozen_k}/s{p.seed_a}-s{p.seed_b}.csv"
            for p in cka_layers_pairs()]


def cka_layers_targets():
    return (["results/summary/cka_layers.csv", "results/summary/layer_identification.csv"]
            if cka_layers_pairs() else [])


def cka_layers_coordinates(wildcards):
    return {"dataset": wildcards.dataset, "arch": wildcards.arch, "width": int(wildcards.width),
            "frozen_k": int(wildcards.frozen), "seed_a": int(wildcards.seed_a), "seed_b": int(wildcards.seed_b)}


def figure_inputs(wildcards):
    """Tables rule `figures` draws from; weight-space and cross-layer tables only when the
    config produces them (the figures then say "not available" instead)."""
    exp = experiment_of(wildcards)
    inputs = {"measures": "results/summary/measures.csv", "runs": "results/summary/runs.csv"}
    if config["lmc"]["enabled"]:
        inputs["lmc"] = "results/summary/lmc.csv"
        inputs["lmc_curves"] = [f"results/{g.lmc_path}/curve.csv" for g in LMC_GROUPS
                                if (g.dataset, g.arch) == (exp.dataset, exp.arch)]
    if config["rotation"]["enabled"]:
        inputs["rotation"] = "results/summary/rotation.csv"
    if cka_layers_pairs():
        inputs["cka_layers"] = "results/summary/cka_layers.csv"
    return inputs


#: the groups with pairs for LMC (cross-seed or data-order; a group of the reference seed alone has none)
LMC_GROUPS = [g for g in GROUPS.values() if g.lmc_pairs()]


def all_lmc_barriers(wildcards):
    return [f"results/{g.lmc_path}/barriers.csv" for g in LMC_GROUPS]


def all_rotation_tables(wildcards):
    # an experiment whose architecture rotation.layers leaves out ({arch: []}) has no rotation job
    return [f"results/rotation/{e.dataset}/{e.arch}/w{w}/s{e.reference_seed}.csv"
            for e in SWEEP.experiments if e.rotation_layers for w in e.widths]


def weight_space_targets():
    targets = []
    if config["lmc"]["enabled"]:
        targets.append("results/summary/lmc.csv")
    if config["rotation"]["enabled"]:
        targets.append("results/summary/rotation.csv")
    return targets


# Memory (MB) of the jobs that load the data and run a network, estimated from the config
# (convergent.memory): plan_sweep refuses a width whose estimate exceeds max_mem_mb or this
# machine's memory, and each job's mem_mb is its estimate plus headroom (request_mb), so a
# cluster asks for what the job needs.
from convergent.memory import extract_estimate, request_mb, train_estimate


def train_mem_mb(wildcards):
    exp = experiment_of(wildcards)
    return request_mb(train_estimate(exp.dataset, exp.arch, int(wildcards.width), exp.model, exp.training,
                                     exp.data))


def extract_mem_mb(wildcards):
    exp = experiment_of(wildcards)
    return request_mb(extract_estimate(exp.dataset, exp.arch, int(wildcards.width), exp.model, exp.extract,
                                       exp.data))
