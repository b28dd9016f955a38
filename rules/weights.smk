# weights: experiments on checkpoints rather than stored activations (Brown et al.;
# linear mode connectivity). `lmc` per comparison group (cross-seed and data-order pairs), `rotation` per reference run.


rule lmc:
    # one job per comparison group (see rules/compare.smk): the group's cross-seed pairs with
    # every configured variant, its data-order pair with the plain interpolation
    input:
        group_checkpoints,
    output:
        curve="results/lmc/{dataset}/{arch}/w{width}/f{frozen}/s{seed}/curve.csv",
        barriers="results/lmc/{dataset}/{arch}/w{width}/f{frozen}/s{seed}/barriers.csv",
    params:
        settings=extract_params,
        lmc=SETTINGS.lmc.as_dict(),
        pairs=group_lmc_pairs,
        data_dir=config["data_dir"],
        device=config["device"],
    threads: config["threads"]
    resources:
        mem_mb=train_mem_mb,  # two networks of this width on the data: as training
        runtime=60,
    log:
        "results/logs/lmc/{dataset}/{arch}/w{width}/f{frozen}/s{seed}.log",
    benchmark:
        "results/benchmarks/lmc/{dataset}/{arch}/w{width}/f{frozen}/s{seed}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/lmc.py"


rule rotation:
    input:
        model="results/runs/{dataset}/{arch}/w{width}/f0/s{seed}/model.pt",
    output:
        "results/rotation/{dataset}/{arch}/w{width}/s{seed}.csv",
    params:
        settings=training_params,
        rotation=SETTINGS.rotation.as_dict(),
        data_dir=config["data_dir"],
        device=config["device"],
    threads: config["threads"]
    resources:
        mem_mb=train_mem_mb,  # retrains above the rotated layer
        runtime=120,
    log:
        "results/logs/rotation/{dataset}/{arch}/w{width}/s{seed}.log",
    benchmark:
        "results/benchmarks/rotation/{dataset}/{arch}/w{width}/s{seed}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/rotation.py"


rule lmc_table:
    input:
        all_lmc_barriers,
    output:
        "results/summary/lmc.csv",
    log:
        "results/logs/aggregate/lmc_table.log",
    benchmark:
        "results/benchmarks/aggregate/lmc_table.tsv"
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/concat_table.py"


rule rotation_table:
    input:
        all_rotation_tables,
    output:
        "results/summary/rotation.csv",
    log:
        "results/logs/aggregate/rotation_table.log",
    benchmark:
        "results/benchmarks/aggregate/rotation_table.tsv"
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/concat_table.py"
