# train: one job per run. A frozen_k > 0 run waits for its reference run's checkpoint.


def reference_checkpoint(wildcards):
    """Frozen runs copy their first k layers from the reference run (trained or initial weights)."""
    run = run_of(wildcards)
    if run.frozen_k == 0:
        return []
    exp = experiment_of(wildcards)
    ref = exp.reference_run(run)
    name = "model.pt" if exp.frozen_from == "trained" else "init.pt"
    return f"results/{ref.path}/{name}"


def training_params(wildcards):
    exp = experiment_of(wildcards)
    return {
        "model": exp.model,
        "training": exp.training,
        "frozen_from": exp.frozen_from,
        "reference_seed": exp.reference_seed,
    }


rule train:
    input:
        reference=reference_checkpoint,
    output:
        model=RUN + "/model.pt",
        init=RUN + "/init.pt",
        log_csv=RUN + "/train_log.csv",
        metrics=RUN + "/metrics.json",
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
        LOGS + "/train/{dataset}/{arch}/w{width}/f{frozen}/s{seed}.log",
    benchmark:
        BENCH + "/train/{dataset}/{arch}/w{width}/f{frozen}/s{seed}.tsv"
    script:
        "../scripts/train.py"
