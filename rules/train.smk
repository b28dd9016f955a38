# train: one job per run. A frozen_k > 0 run waits for its reference run's checkpoint.


rule train:
    input:
        reference=reference_checkpoint,
    output:
        model="results/runs/{dataset}/{arch}/w{width}/f{frozen}/s{seed}/model.pt",
        init="results/runs/{dataset}/{arch}/w{width}/f{frozen}/s{seed}/init.pt",
        log_csv="results/runs/{dataset}/{arch}/w{width}/f{frozen}/s{seed}/train_log.csv",
        metrics="results/runs/{dataset}/{arch}/w{width}/f{frozen}/s{seed}/metrics.json",
    params:
        settings=training_params,
        data_dir=config["data_dir"],
        download=config["download"],
        device=config["device"],
    threads: config["threads"]
    resources:
        mem_mb=train_mem_mb,  # the estimate (rules/common.smk)
        runtime=60,
    log:
        "results/logs/train/{dataset}/{arch}/w{width}/f{frozen}/s{seed}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{arch}/w{width}/f{frozen}/s{seed}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/train.py"


# train_order: a data-order run (controls.data_order): the initial weights of seed {seed},
# the minibatch order of seed {order} (the script's Run.from_wildcards reads it); the same job
# as `train` otherwise.
use rule train as train_order with:
    output:
        model="results/runs/{dataset}/{arch}/w{width}/f{frozen}/s{seed}o{order}/model.pt",
        init="results/runs/{dataset}/{arch}/w{width}/f{frozen}/s{seed}o{order}/init.pt",
        log_csv="results/runs/{dataset}/{arch}/w{width}/f{frozen}/s{seed}o{order}/train_log.csv",
        metrics="results/runs/{dataset}/{arch}/w{width}/f{frozen}/s{seed}o{order}/metrics.json",
    log:
        "results/logs/train/{dataset}/{arch}/w{width}/f{frozen}/s{seed}o{order}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{arch}/w{width}/f{frozen}/s{seed}o{order}.tsv"
