# Shared helpers: wildcard constraints and path builders over SWEEP, the sweep the Snakefile
# planned (convergent.config.load_sweep) with every section's settings (convergent.settings).
# A job gets its settings as plain data (Section.as_dict(), every key: Snakemake reruns a job
# whose settings changed, a default included); its script rebuilds the objects.
import itertools
import re

from convergent.io import tree_bytes
from convergent.sweep import Pair, Run

SETTINGS = SWEEP.settings

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
    return Run.from_wildcards(wildcards)


def reference_checkpoint(wildcards):
    """Frozen runs copy their first k layers from the reference run (trained or initial weights)."""
    run = run_of(wildcards)
    if run.frozen_k == 0:
        return []
    exp = experiment_of(wildcards)
    ref = exp.reference_run(run)
    name = "model.pt" if exp.frozen_from == "trained" else "init.pt"
    return f"results/{ref.path}/{name}"


def training_params(wildcards):
    """The train and rotation jobs' settings (convergent.sweep.Experiment.train_params)."""
    return experiment_of(wildcards).train_params()


def extract_params(wildcards):
    """The extract and lmc jobs' settings (convergent.sweep.Experiment.extract_params)."""
    return experiment_of(wildcards).extract_params()


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
    return SETTINGS.moments.threads if tree_bytes(input[0]) >= MOMENTS_TWO_THREADS_MIN_BYTES else 1


def group_coordinates(wildcards):
    """{pair key: the pair's columns of the measures table} of the group (the layer columns are
    added per layer)."""
    exp = experiment_of(wildcards)
    return {p.key: p.coordinates(exp.frozen_from) for p in group_of(wildcards).pairs}


def group_checkpoints(wildcards):
    """Every trained checkpoint the group's LMC pairs read, each once."""
    return list(dict.fromkeys(f"results/{r.path}/model.pt" for p in group_of(wildcards).lmc_pairs()
                              for r in p.runs()))


def group_lmc_pairs(wildcards):
    """{pair key: {checkpoints, variants, coordinates}} of the group's LMC pairs. A data-order pair
    gets the plain interpolation only (Frankle et al.'s instability): aligning a same-init pair by
    permutation or repairing its statistics answers nothing the plain barrier does not."""
    variants = list(SETTINGS.lmc.variants)
    out = {}
    for p in group_of(wildcards).lmc_pairs():
        out[p.key] = {"checkpoints": [f"results/{r.path}/model.pt" for r in p.runs()],
                      "variants": ["naive"] if p.control == "data_order" else variants,
                      "coordinates": p.coordinates()}
    return out


def pair_layers(wildcards):
    """The layers a pair is compared on (the configured ones, in network order)."""
    return list(experiment_of(wildcards).layers)


def pair_layer_index(wildcards):
    """1-based depth of each compared layer among all layers of the architecture."""
    exp = experiment_of(wildcards)
    return {layer: exp.all_layers.index(layer) + 1 for layer in exp.layers}


from convergent.figures.kinds import FIGURE_NAMES, figure_kind


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


def cka_layers_pairs():
    """The cross-seed pairs per (dataset, arch, width, frozen_k) for the layer × layer CKA: every
    pair of the first ``cka_layers.seeds`` seeds (three by default: the fewest an interval over
    seeds rests on, kornblith_grounding and kornblith_cca; docs/uncertainty.md)."""
    pairs = []
    for exp in SWEEP.experiments:
        seeds = sorted(exp.seeds)[:SETTINGS.cka_layers.seeds]
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
    return Pair(wildcards.dataset, wildcards.arch, int(wildcards.width), int(wildcards.frozen), "cross",
                int(wildcards.seed_a), int(wildcards.seed_b)).coordinates()


def figure_inputs(wildcards):
    """Tables rule `figures` draws from; weight-space and cross-layer tables only when the
    config produces them (the figures then say "not available" instead)."""
    exp = experiment_of(wildcards)
    inputs = {"measures": "results/summary/measures.csv", "runs": "results/summary/runs.csv"}
    if SETTINGS.lmc.enabled:
        inputs["lmc"] = "results/summary/lmc.csv"
        inputs["lmc_curves"] = [f"results/{g.lmc_path}/curve.csv" for g in LMC_GROUPS
                                if (g.dataset, g.arch) == (exp.dataset, exp.arch)]
    if SETTINGS.rotation.enabled:
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
    if SETTINGS.lmc.enabled:
        targets.append("results/summary/lmc.csv")
    if SETTINGS.rotation.enabled:
        targets.append("results/summary/rotation.csv")
    return targets


# Memory (MB) of the jobs that load the data and run a network, estimated from the config
# (convergent.memory): plan_sweep refuses a width whose estimate exceeds max_mem_mb or this
# machine's memory, and each job's mem_mb is its estimate plus headroom (request_mb), so a
# cluster asks for what the job needs.
from convergent.memory import extract_estimate, request_mb, train_estimate


def train_mem_mb(wildcards):
    exp = experiment_of(wildcards)
    return request_mb(train_estimate(exp.dataset, exp.arch, int(wildcards.width), exp.model,
                                     exp.training, exp.data))


def extract_mem_mb(wildcards):
    exp = experiment_of(wildcards)
    return request_mb(extract_estimate(exp.dataset, exp.arch, int(wildcards.width), exp.model,
                                       exp.extract, exp.data))
