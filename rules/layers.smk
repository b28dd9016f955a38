# layers: linear CKA of every layer of one network with every layer of another
# (Kornblith et al.'s layer × layer heatmap and grounding test). Every cross-seed pair of the first
# three seeds of each (dataset, arch, width, frozen_k), on the trained stores.


rule cka_layers:
    input:
        a="results/runs/{dataset}/{arch}/w{width}/f{frozen}/s{seed_a}/trained.zarr",
        b="results/runs/{dataset}/{arch}/w{width}/f{frozen}/s{seed_b}/trained.zarr",
    output:
        "results/layers/{dataset}/{arch}/w{width}/f{frozen}/s{seed_a}-s{seed_b}.csv",
    params:
        layers=pair_layers,
        layer_index=pair_layer_index,
        coordinates=cka_layers_coordinates,
        cka_layers=SETTINGS.cka_layers.as_dict(),
    resources:
        mem_mb=2000,
        runtime=30,
    log:
        "results/logs/cka_layers/{dataset}/{arch}/w{width}/f{frozen}/s{seed_a}-s{seed_b}.log",
    benchmark:
        "results/benchmarks/cka_layers/{dataset}/{arch}/w{width}/f{frozen}/s{seed_a}-s{seed_b}.tsv"
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/cka_layers.py"


rule cka_layers_table:
    input:
        all_cka_layer_tables,
    output:
        "results/summary/cka_layers.csv",
    log:
        "results/logs/aggregate/cka_layers_table.log",
    benchmark:
        "results/benchmarks/aggregate/cka_layers_table.tsv"
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/concat_table.py"


rule layer_identification:
    # Kornblith et al.'s Table 2 per measure × cell, from the layer × layer tables
    input:
        "results/summary/cka_layers.csv",
    output:
        "results/summary/layer_identification.csv",
    log:
        "results/logs/aggregate/layer_identification.log",
    benchmark:
        "results/benchmarks/aggregate/layer_identification.tsv"
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/layer_identification.py"
