# weights: experiments on checkpoints rather than stored activations (Brown et al.;
# linear mode connectivity). `lmc` per cross-seed pair, `rotation` per reference run.


rule lmc:
    input:
        a="results/runs/{dataset}/{arch}/w{width}/f{frozen}/s{seed_a}/model.pt",
        b="results/runs/{dataset}/{arch}/w{width}/f{frozen}/s{seed_b}/model.pt",
    output:
        curve="results/lmc/{dataset}/{arch}/w{width}/f{frozen}/s{seed_a}-s{seed_b}/curve.csv",
        barriers="results/lmc/{dataset}/{arch}/w{width}/f{frozen}/s{seed_a}-s{seed_b}/barriers.csv",
    params:
        settings=extract_params,
        lmc=config["lmc"],
        data_dir=config["data_dir"],
        device=config["device"],
    threads: config["threads"]
    resources:
        mem_mb=2000,
        runtime=60,
    log:
        "results/logs/lmc/{dataset}/{arch}/w{width}/f{frozen}/s{seed_a}-s{seed_b}.log",
    benchmark:
        "results/benchmarks/lmc/{dataset}/{arch}/w{width}/f{frozen}/s{seed_a}-s{seed_b}.tsv"
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
        rotation=config["rotation"],
        data_dir=config["data_dir"],
        device=config["device"],
    threads: config["threads"]
    resources:
        mem_mb=2000,
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


# lmc_order: LMC of a data-order pair (the reference network against the same initial weights
# trained with another minibatch order): Frankle et al.'s instability analysis. Its table rows
# carry control = data_order and the order seeds; one variant, the plain interpolation.
use rule lmc as lmc_order with:
    input:
        a="results/runs/{dataset}/{arch}/w{width}/f{frozen}/s{seed_a}/model.pt",
        b="results/runs/{dataset}/{arch}/w{width}/f{frozen}/s{seed_b}o{order}/model.pt",
    output:
        curve="results/lmc/{dataset}/{arch}/w{width}/f{frozen}/s{seed_a}-s{seed_b}o{order}/curve.csv",
        barriers="results/lmc/{dataset}/{arch}/w{width}/f{frozen}/s{seed_a}-s{seed_b}o{order}/barriers.csv",
    params:
        settings=order_lmc_settings,
        # only the plain interpolation: Frankle et al.'s instability; aligning a same-init pair by
        # permutation or repairing its statistics answers nothing the plain barrier does not
        lmc={**config["lmc"], "variants": ["naive"]},
        data_dir=config["data_dir"],
        device=config["device"],
    log:
        "results/logs/lmc/{dataset}/{arch}/w{width}/f{frozen}/s{seed_a}-s{seed_b}o{order}.log",
    benchmark:
        "results/benchmarks/lmc/{dataset}/{arch}/w{width}/f{frozen}/s{seed_a}-s{seed_b}o{order}.tsv"
