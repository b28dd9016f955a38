# aggregate: tidy tables over the whole sweep, then figures.

rule runs_table:
    input:
        all_metrics,
    output:
        "results/summary/runs.csv",
    params:
        chance_margin=config["chance_margin"],
    log:
        "results/logs/aggregate/runs_table.log",
    benchmark:
        "results/benchmarks/aggregate/runs_table.tsv"
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/runs_table.py"


rule measures_table:
    input:
        all_measure_tables,
    output:
        "results/summary/measures.csv",
    log:
        "results/logs/aggregate/measures_table.log",
    benchmark:
        "results/benchmarks/aggregate/measures_table.tsv"
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/concat_table.py"


rule figures:
    # one job per experiment (dataset, arch): a fixed set of figures, each a PNG (in the
    # report, captioned from report/<kind>.rst) and an SVG; see convergent/figures/kinds.py
    input:
        unpack(figure_inputs),
    output:
        matched_vs_layer=figure_output("matched_vs_layer"),
        frozen_vs_layer=figure_output("frozen_vs_layer"),
        vs_width=figure_output("vs_width"),
        sorted_corr=figure_output("sorted_corr"),
        subspace_vs_layer=figure_output("subspace_vs_layer"),
        minimal_match_hist=figure_output("minimal_match_hist"),
        alignment_curves=figure_output("alignment_curves"),
        cka_layers=figure_output("cka_layers"),
        layer_identification=figure_output("layer_identification"),
        lmc_vs_width=figure_output("lmc_vs_width"),
        rotation=figure_output("rotation"),
        svg=expand("results/figures/{{dataset}}_{{arch}}_{kind}.svg", kind=FIGURE_NAMES),
    log:
        "results/logs/aggregate/figures/{dataset}_{arch}.log",
    benchmark:
        "results/benchmarks/aggregate/figures/{dataset}_{arch}.tsv"
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/figures.py"
