# extract: one job per run writes two Zarr stores, the trained network's and the initial
# network's (which the floor control compares), each one array per layer. Every store is
# written to a temporary sibling directory and renamed into place when complete.


rule extract:
    input:
        trained="results/runs/{dataset}/{arch}/w{width}/f{frozen}/s{seed}/model.pt",
        init="results/runs/{dataset}/{arch}/w{width}/f{frozen}/s{seed}/init.pt",
    output:
        trained=directory("results/runs/{dataset}/{arch}/w{width}/f{frozen}/s{seed}/trained.zarr"),
        init=directory("results/runs/{dataset}/{arch}/w{width}/f{frozen}/s{seed}/init.zarr"),
    params:
        settings=extract_params,
        data_dir=config["data_dir"],
        device=config["device"],
    threads: config["threads"]
    resources:
        mem_mb=extract_mem_mb,  # the estimate (rules/common.smk)
        runtime=30,
    log:
        "results/logs/extract/{dataset}/{arch}/w{width}/f{frozen}/s{seed}.log",
    benchmark:
        "results/benchmarks/extract/{dataset}/{arch}/w{width}/f{frozen}/s{seed}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/extract.py"


# extract_order: the same extraction for a data-order run (its init store equals seed {seed}'s).
use rule extract as extract_order with:
    input:
        trained="results/runs/{dataset}/{arch}/w{width}/f{frozen}/s{seed}o{order}/model.pt",
        init="results/runs/{dataset}/{arch}/w{width}/f{frozen}/s{seed}o{order}/init.pt",
    output:
        trained=directory("results/runs/{dataset}/{arch}/w{width}/f{frozen}/s{seed}o{order}/trained.zarr"),
        init=directory("results/runs/{dataset}/{arch}/w{width}/f{frozen}/s{seed}o{order}/init.zarr"),
    log:
        "results/logs/extract/{dataset}/{arch}/w{width}/f{frozen}/s{seed}o{order}.log",
    benchmark:
        "results/benchmarks/extract/{dataset}/{arch}/w{width}/f{frozen}/s{seed}o{order}.tsv"
