# extract: one Zarr store per run and network state (trained weights, or the initial
# weights that the floor control compares). Written to a temporary sibling directory
# and renamed into place when complete.


def extract_checkpoint(wildcards):
    name = "model.pt" if wildcards.state == "trained" else "init.pt"
    return f"results/{run_of(wildcards).path}/{name}"


def extract_params(wildcards):
    exp = experiment_of(wildcards)
    return {"layers": exp.layers, "model": exp.model, "extract": exp.extract}


rule extract:
    input:
        checkpoint=extract_checkpoint,
    output:
        store=directory(RUN + "/{state}.zarr"),
    params:
        settings=extract_params,
        data_dir=config["data_dir"],
        device=config["device"],
    threads: config["threads"]
    resources:
        mem_mb=2000,
        runtime=30,
    log:
        LOGS + "/extract/{dataset}/{arch}/w{width}/f{frozen}/s{seed}/{state}.log",
    benchmark:
        BENCH + "/extract/{dataset}/{arch}/w{width}/f{frozen}/s{seed}/{state}.tsv"
    script:
        "../scripts/extract.py"
