# compare: the pairs of a cell are compared in groups, one per (cell, seed): the pairs that
# seed completes (convergent.sweep.PairGroup: its cross and floor pairs with every earlier
# seed, its data-order pair, the reference seed's ceiling pair). Per group, one streaming
# pass per (pair, layer) over the activation stores gives the moments directory
# (moments/{control}/{label}/{layer}.npz); every measure is then computed from those files
# alone, so changing a measure parameter re-runs only `measures` and what is downstream.
#
# Why groups: a job's start-up (interpreter, imports) costs more than a small pair's work, and
# Snakemake spends milliseconds planning each job. One job per group pays both once per seed
# instead of once per pair, and adding a seed adds its groups without rerunning earlier ones
# (bench/bench_dag.py and bench/bench_run.py measure it).


rule moments:
    input:
        group_stores,
    output:
        directory("results/pairs/{dataset}/{arch}/w{width}/f{frozen}/s{seed}/moments"),
    params:
        moments=SETTINGS.moments.as_dict(),
        layers=pair_layers,
        pairs=group_pair_stores,
    threads: moments_threads
    resources:
        mem_mb=4000,  # O(d²): a view at moments.max_features (4096) needs ~3.5 GB
        runtime=30,
    log:
        "results/logs/moments/{dataset}/{arch}/w{width}/f{frozen}/s{seed}.log",
    benchmark:
        "results/benchmarks/moments/{dataset}/{arch}/w{width}/f{frozen}/s{seed}.tsv"
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/moments.py"


rule measures:
    input:
        "results/pairs/{dataset}/{arch}/w{width}/f{frozen}/s{seed}/moments",
    output:
        "results/pairs/{dataset}/{arch}/w{width}/f{frozen}/s{seed}/measures.csv",
    params:
        measures=SETTINGS.measures.as_dict(),
        layers=pair_layers,
        layer_index=pair_layer_index,
        pairs=group_coordinates,
    resources:
        mem_mb=2000,
        runtime=30,
    log:
        "results/logs/measures/{dataset}/{arch}/w{width}/f{frozen}/s{seed}.log",
    benchmark:
        "results/benchmarks/measures/{dataset}/{arch}/w{width}/f{frozen}/s{seed}.tsv"
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/measures.py"
