# Shared helpers: the planned sweep, wildcard constraints and path builders.

from convergent.sweep import CONTROLS, ConfigError, Pair, Run, plan_sweep

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
    seed_a=r"\d+",
    seed_b=r"\d+",
    control="|".join(CONTROLS),
    layer=r"[A-Za-z0-9_.]+",


def experiment_of(wildcards):
    return SWEEP.experiment(wildcards.dataset, wildcards.arch)


def run_of(wildcards):
    return Run(wildcards.dataset, wildcards.arch, int(wildcards.width), int(wildcards.frozen),
               int(wildcards.seed))


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
    exp = experiment_of(wildcards)
    return {
        "model": exp.model,
        "training": exp.training,
        "frozen_from": exp.frozen_from,
        "reference_seed": exp.reference_seed,
    }


def extract_params(wildcards):
    exp = experiment_of(wildcards)
    return {"layers": exp.layers, "model": exp.model, "extract": exp.extract}


def pair_of(wildcards):
    return Pair(wildcards.dataset, wildcards.arch, int(wildcards.width), int(wildcards.frozen),
                wildcards.control, int(wildcards.seed_a), int(wildcards.seed_b))


def pair_stores(wildcards):
    pair = pair_of(wildcards)
    run_a, run_b = pair.runs()
    return {"a": f"results/{run_a.path}/{pair.state}.zarr",
            "b": f"results/{run_b.path}/{pair.state}.zarr"}


def pair_coordinates(wildcards):
    pair = pair_of(wildcards)
    exp = experiment_of(wildcards)
    return {"dataset": pair.dataset, "arch": pair.arch, "width": pair.width,
            "frozen_k": pair.frozen_k, "frozen_from": exp.frozen_from, "control": pair.control,
            "seed_a": pair.seed_a, "seed_b": pair.seed_b, "layer": wildcards.layer,
            "layer_index": exp.all_layers.index(wildcards.layer) + 1}


FIGURE_KINDS = ["vs_layer", "vs_width", "vs_frozen"]


def all_metrics(wildcards):
    return [f"results/{run.path}/metrics.json" for run in SWEEP.runs()]


def all_measure_tables(wildcards):
    return [f"results/{pair.path}/{layer}.measures.csv" for pair, layer in SWEEP.pair_layers()]


def figure_paths():
    return [f"results/figures/{exp.dataset}_{exp.arch}_{kind}.png"
            for exp in SWEEP.experiments for kind in FIGURE_KINDS]


def all_lmc_barriers(wildcards):
    return [f"results/lmc/{p.dataset}/{p.arch}/w{p.width}/f{p.frozen_k}/s{p.seed_a}-s{p.seed_b}/barriers.csv"
            for p in SWEEP.pairs() if p.control == "cross"]


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
