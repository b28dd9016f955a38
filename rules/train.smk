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
        mem_mb=2000,
        runtime=60,
    log:
        "results/logs/train/{dataset}/{arch}/w{width}/f{frozen}/s{seed}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{arch}/w{width}/f{frozen}/s{seed}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/train.py"
