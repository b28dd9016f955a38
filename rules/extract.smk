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
        mem_mb=2000,
        runtime=30,
    log:
        "results/logs/extract/{dataset}/{arch}/w{width}/f{frozen}/s{seed}.log",
    benchmark:
        "results/benchmarks/extract/{dataset}/{arch}/w{width}/f{frozen}/s{seed}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/extract.py"
