# aggregate: tidy tables over the whole sweep, then figures.

rule runs_table:
    input:
        all_metrics,
    output:
        "results/summary/runs.csv",
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
    input:
        measures="results/summary/measures.csv",
        runs="results/summary/runs.csv",
    output:
        figures=figure_paths(),
    log:
        "results/logs/aggregate/figures.log",
    benchmark:
        "results/benchmarks/aggregate/figures.tsv"
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/figures.py"
