# compare: per pair, one streaming pass per layer over both activation stores gives the
# pair's moments directory ({layer}.npz per layer); every measure is then computed from
# those files alone, so changing a measure parameter re-runs only `measures` and what is
# downstream.
#
# Jobs are per pair, not per (pair, layer): Snakemake spends a few ms planning each job,
# so a paper-size sweep with per-layer jobs (36,000+) takes minutes just to plan; per-pair
# jobs keep it under a minute and pay the interpreter start-up once per pair
# (bench/bench_dag.py measures both).


rule moments:
    wildcard_constraints:
        seed_b=PAIR_SIDE,  # s0-s0o1: a data-order pair
    input:
        unpack(pair_stores),
    output:
        directory("results/pairs/{dataset}/{arch}/w{width}/f{frozen}/{control}/s{seed_a}-s{seed_b}/moments"),
    params:
        moments=config["moments"],
        layers=pair_layers,
    threads: moments_threads
    resources:
        mem_mb=4000,  # O(d²): a view at moments.max_features (4096) needs ~3.5 GB
        runtime=30,
    log:
        "results/logs/moments/{dataset}/{arch}/w{width}/f{frozen}/{control}/s{seed_a}-s{seed_b}.log",
    benchmark:
        "results/benchmarks/moments/{dataset}/{arch}/w{width}/f{frozen}/{control}/s{seed_a}-s{seed_b}.tsv"
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/moments.py"


rule measures:
    wildcard_constraints:
        seed_b=PAIR_SIDE,  # s0-s0o1: a data-order pair
    input:
        "results/pairs/{dataset}/{arch}/w{width}/f{frozen}/{control}/s{seed_a}-s{seed_b}/moments",
    output:
        "results/pairs/{dataset}/{arch}/w{width}/f{frozen}/{control}/s{seed_a}-s{seed_b}/measures.csv",
    params:
        measures=config["measures"],
        layers=pair_layers,
        layer_index=pair_layer_index,
        coordinates=pair_coordinates,
    resources:
        mem_mb=2000,
        runtime=30,
    log:
        "results/logs/measures/{dataset}/{arch}/w{width}/f{frozen}/{control}/s{seed_a}-s{seed_b}.log",
    benchmark:
        "results/benchmarks/measures/{dataset}/{arch}/w{width}/f{frozen}/{control}/s{seed_a}-s{seed_b}.tsv"
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/measures.py"
