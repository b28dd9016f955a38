# Shared helpers: the planned sweep, wildcard constraints and path builders.

from convergent.io import tree_bytes
from convergent.sweep import CONTROLS, ConfigError, Pair, Run, parse_run_label, plan_sweep

try:
    SWEEP = plan_sweep(config)
except ConfigError as err:
    raise WorkflowError(f"invalid config: {err}") from None

DATASETS = sorted({e.dataset for e in SWEEP.experiments})
ARCHS = sorted({e.arch for e in SWEEP.experiments})


wildcard_constraints:
    dataset="|".join(DATASETS),
    arch="|".join(ARCHS),
    width=r"\d+",
    frozen=r"\d+",
    seed=r"\d+",
    order=r"\d+",
    seed_a=r"\d+",
    seed_b=r"\d+",
    control="|".join(CONTROLS),


def experiment_of(wildcards):
    return SWEEP.experiment(wildcards.dataset, wildcards.arch)


#: a pair side's label in pair paths: ``{seed}``, or ``{seed}o{order}`` for a data-order run
#: (rules moments and measures constrain ``seed_b`` with it; elsewhere seeds are plain digits)
PAIR_SIDE = r"\d+(?:o\d+)?"


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


def order_lmc_settings(wildcards):
    """Settings of the lmc_order rule, which are an ordinary LMC job's plus the columns its tables carry
    beyond the pair's seeds (control data_order and the two order seeds)."""
    return {**extract_params(wildcards),
            "coordinates": {"control": "data_order", "order_seed_a": int(wildcards.seed_a),
                            "order_seed_b": int(wildcards.order)}}


def extract_params(wildcards):
    exp = experiment_of(wildcards)
    return {"layers": exp.layers, "model": exp.model, "extract": exp.extract, **data_settings(exp)}


def pair_of(wildcards):
    seed_a, order_a = parse_run_label(wildcards.seed_a)
    seed_b, order_b = parse_run_label(wildcards.seed_b)
    return Pair(wildcards.dataset, wildcards.arch, int(wildcards.width), int(wildcards.frozen),
                wildcards.control, seed_a, seed_b, order_a, order_b)


def pair_stores(wildcards):
    pair = pair_of(wildcards)
    run_a, run_b = pair.runs()
    return {"a": f"results/{run_a.path}/{pair.state}.zarr",
            "b": f"results/{run_b.path}/{pair.state}.zarr"}


#: a pair whose network-A store holds less than this gets one thread for its moments: its
#: pass takes about a second, mostly start-up, and should not hold a second core
MOMENTS_TWO_THREADS_MIN_BYTES = 256 * 2**20


def moments_threads(wildcards, input):
    """Cores of a moments job: ``moments.threads`` (one thread per fold) for big stores, else 1.
    Evaluated when the job is ready, so the stores exist (a dry run sees 0 bytes)."""
    return config["moments"]["threads"] if tree_bytes(input.a) >= MOMENTS_TWO_THREADS_MIN_BYTES else 1


def pair_coordinates(wildcards):
    """The pair's columns of the tidy measures table (the layer columns are added per layer)."""
    pair = pair_of(wildcards)
    coords = {"dataset": pair.dataset, "arch": pair.arch, "width": pair.width,
              "frozen_k": pair.frozen_k, "frozen_from": experiment_of(wildcards).frozen_from,
              "control": pair.control, "seed_a": pair.seed_a, "seed_b": pair.seed_b}
    if (pair.order_seed_a, pair.order_seed_b) != (pair.seed_a, pair.seed_b):
        # only data-order pairs name their order seeds here (the params of every other pair, and
        # so their jobs, stay as they were); the measures table fills order seed = seed for the rest
        coords.update(order_seed_a=pair.order_seed_a, order_seed_b=pair.order_seed_b)
    return coords


def pair_layers(wildcards):
    """The layers a pair is compared on (the configured ones, in network order)."""
    return list(experiment_of(wildcards).layers)


def pair_layer_index(wildcards):
    """1-based depth of each compared layer among all layers of the architecture."""
    exp = experiment_of(wildcards)
    return {layer: exp.all_layers.index(layer) + 1 for layer in exp.layers}


from convergent.figures.kinds import FIGURE_NAMES, figure_kind
from convergent.jobs import CKA_LAYERS_DEFAULTS

CKA_LAYERS_PARAMS = dict(CKA_LAYERS_DEFAULTS)


def all_metrics(wildcards):
    return [f"results/{run.path}/metrics.json" for run in SWEEP.runs()]


def all_measure_tables(wildcards):
    return [f"results/{pair.path}/measures.csv" for pair in SWEEP.pairs()]


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
    """One cross-seed pair per (dataset, arch, width, frozen_k) for the layer × layer CKA: the
    first two seeds. Cells with a single seed have none."""
    pairs = []
    for exp in SWEEP.experiments:
        seeds = sorted(exp.seeds)
        if len(seeds) < 2:
            continue
        pairs += [Pair(exp.dataset, exp.arch, w, f, "cross", seeds[0], seeds[1])
                  for w in exp.widths for f in exp.frozen_k]
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
        inputs["lmc_curves"] = [lmc_file(p, "curve.csv") for p in SWEEP.pairs()
                                if p.control == "cross" and (p.dataset, p.arch) == (exp.dataset, exp.arch)]
    if config["rotation"]["enabled"]:
        inputs["rotation"] = "results/summary/rotation.csv"
    if cka_layers_pairs():
        inputs["cka_layers"] = "results/summary/cka_layers.csv"
    return inputs


def lmc_file(pair, name):
    """File ``name`` of rule lmc's (cross-seed pair) or lmc_order's (data-order pair) output directory."""
    return (f"results/lmc/{pair.dataset}/{pair.arch}/w{pair.width}/f{pair.frozen_k}/"
            f"{pair.label}/{name}")


def all_lmc_barriers(wildcards):
    return [lmc_file(p, "barriers.csv") for p in SWEEP.pairs() if p.control in ("cross", "data_order")]


def all_rotation_tables(wildcards):
    return [f"results/rotation/{e.dataset}/{e.arch}/w{w}/s{e.reference_seed}.csv"
            for e in SWEEP.experiments for w in e.widths]


def weight_space_targets():
    targets = []
    if config["lmc"]["enabled"]:
        targets.append("results/summary/lmc.csv")
    if config["rotation"]["enabled"]:
        targets.append("results/summary/rotation.csv")
    return targets
