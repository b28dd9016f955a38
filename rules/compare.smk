# compare: per (pair, layer), one streaming pass over both activation stores gives the
# moments file; every measure is then computed from that file alone, so changing a
# measure parameter re-runs only `measures` and what is downstream.


def pair_of(wildcards):
    return Pair(wildcards.dataset, wildcards.arch, int(wildcards.width), int(wildcards.frozen),
                wildcards.control, int(wildcards.seed_a), int(wildcards.seed_b))


def pair_stores(wildcards):
    pair = pair_of(wildcards)
    run_a, run_b = pair.runs()
    return {"a": f"results/{run_a.path}/{pair.state}.zarr",
            "b": f"results/{run_b.path}/{pair.state}.zarr"}


def pair_coordinates(wildcards):
    pair = pair_of(wildcards)
    exp = experiment_of(wildcards)
    return {"dataset": pair.dataset, "arch": pair.arch, "width": pair.width,
            "frozen_k": pair.frozen_k, "frozen_from": exp.frozen_from, "control": pair.control,
            "seed_a": pair.seed_a, "seed_b": pair.seed_b, "layer": wildcards.layer,
            "layer_index": exp.all_layers.index(wildcards.layer) + 1}


rule moments:
    input:
        unpack(pair_stores),
    output:
        PAIR + "/{layer}.moments.npz",
    params:
        moments=config["moments"],
    resources:
        mem_mb=2000,
        runtime=30,
    log:
        LOGS + "/moments/{dataset}/{arch}/w{width}/f{frozen}/{control}/s{seed_a}-s{seed_b}/{layer}.log",
    benchmark:
        BENCH + "/moments/{dataset}/{arch}/w{width}/f{frozen}/{control}/s{seed_a}-s{seed_b}/{layer}.tsv"
    script:
        "../scripts/moments.py"


rule measures:
    input:
        PAIR + "/{layer}.moments.npz",
    output:
        PAIR + "/{layer}.measures.csv",
    params:
        measures=config["measures"],
        coordinates=pair_coordinates,
    resources:
        mem_mb=2000,
        runtime=30,
    log:
        LOGS + "/measures/{dataset}/{arch}/w{width}/f{frozen}/{control}/s{seed_a}-s{seed_b}/{layer}.log",
    benchmark:
        BENCH + "/measures/{dataset}/{arch}/w{width}/f{frozen}/{control}/s{seed_a}-s{seed_b}/{layer}.tsv"
    script:
        "../scripts/measures.py"
