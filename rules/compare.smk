# compare: per (pair, layer), one streaming pass over both activation stores gives the
# moments file; every measure is then computed from that file alone, so changing a
# measure parameter re-runs only `measures` and what is downstream.


rule moments:
    input:
        unpack(pair_stores),
    output:
        "results/pairs/{dataset}/{arch}/w{width}/f{frozen}/{control}/s{seed_a}-s{seed_b}/{layer}.moments.npz",
    params:
        moments=config["moments"],
    resources:
        mem_mb=2000,
        runtime=30,
    log:
        "results/logs/moments/{dataset}/{arch}/w{width}/f{frozen}/{control}/s{seed_a}-s{seed_b}/{layer}.log",
    benchmark:
        "results/benchmarks/moments/{dataset}/{arch}/w{width}/f{frozen}/{control}/s{seed_a}-s{seed_b}/{layer}.tsv"
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/moments.py"


rule measures:
    input:
        "results/pairs/{dataset}/{arch}/w{width}/f{frozen}/{control}/s{seed_a}-s{seed_b}/{layer}.moments.npz",
    output:
        "results/pairs/{dataset}/{arch}/w{width}/f{frozen}/{control}/s{seed_a}-s{seed_b}/{layer}.measures.csv",
    params:
        measures=config["measures"],
        coordinates=pair_coordinates,
    resources:
        mem_mb=2000,
        runtime=30,
    log:
        "results/logs/measures/{dataset}/{arch}/w{width}/f{frozen}/{control}/s{seed_a}-s{seed_b}/{layer}.log",
    benchmark:
        "results/benchmarks/measures/{dataset}/{arch}/w{width}/f{frozen}/{control}/s{seed_a}-s{seed_b}/{layer}.tsv"
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/measures.py"
