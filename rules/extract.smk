# extract: one Zarr store per run and network state (trained weights, or the initial
# weights that the floor control compares). Written to a temporary sibling directory
# and renamed into place when complete.


rule extract:
    input:
        checkpoint=extract_checkpoint,
    output:
        store=directory("results/runs/{dataset}/{arch}/w{width}/f{frozen}/s{seed}/{state}.zarr"),
    params:
        settings=extract_params,
        data_dir=config["data_dir"],
        device=config["device"],
    threads: config["threads"]
    resources:
        mem_mb=2000,
        runtime=30,
    log:
        "results/logs/extract/{dataset}/{arch}/w{width}/f{frozen}/s{seed}/{state}.log",
    benchmark:
        "results/benchmarks/extract/{dataset}/{arch}/w{width}/f{frozen}/s{seed}/{state}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/extract.py"
