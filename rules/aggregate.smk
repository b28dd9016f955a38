# aggregate: tidy tables over the whole sweep, then figures.

FIGURE_KINDS = ["vs_layer", "vs_width", "vs_frozen"]


def all_metrics(wildcards):
    return [f"results/{run.path}/metrics.json" for run in SWEEP.runs()]


def all_measure_tables(wildcards):
    return [f"results/{pair.path}/{layer}.measures.csv" for pair, layer in SWEEP.pair_layers()]


def figure_paths():
    return [f"results/figures/{exp.dataset}_{exp.arch}_{kind}.png"
            for exp in SWEEP.experiments for kind in FIGURE_KINDS]


rule runs_table:
    input:
        all_metrics,
    output:
        "results/summary/runs.csv",
    log:
        LOGS + "/aggregate/runs_table.log",
    benchmark:
        BENCH + "/aggregate/runs_table.tsv"
    script:
        "../scripts/runs_table.py"


rule measures_table:
    input:
        all_measure_tables,
    output:
        "results/summary/measures.csv",
    log:
        LOGS + "/aggregate/measures_table.log",
    benchmark:
        BENCH + "/aggregate/measures_table.tsv"
    script:
        "../scripts/measures_table.py"


rule figures:
    input:
        measures="results/summary/measures.csv",
        runs="results/summary/runs.csv",
    output:
        figures=figure_paths(),
    log:
        LOGS + "/aggregate/figures.log",
    benchmark:
        BENCH + "/aggregate/figures.tsv"
    script:
        "../scripts/figures.py"
