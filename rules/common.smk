# Shared helpers: the planned sweep, wildcard constraints and path builders.

from convergent.sweep import CONTROLS, ConfigError, Pair, Run, plan_sweep

try:
    SWEEP = plan_sweep(config)
except ConfigError as err:
    raise WorkflowError(f"invalid config: {err}") from None

DATASETS = sorted({e.dataset for e in SWEEP.experiments})
ARCHS = sorted({e.arch for e in SWEEP.experiments})


wildcard_constraints:
    dataset="|".join(DATASETS),
    arch="|".join(ARCHS),
    width=r"\d+",
    frozen=r"\d+",
    seed=r"\d+",
    seed_a=r"\d+",
    seed_b=r"\d+",
    state="trained|init",
    control="|".join(CONTROLS),
    layer=r"[A-Za-z0-9_.]+",


RUN = "results/runs/{dataset}/{arch}/w{width}/f{frozen}/s{seed}"
PAIR = "results/pairs/{dataset}/{arch}/w{width}/f{frozen}/{control}/s{seed_a}-s{seed_b}"
LOGS = "results/logs"
BENCH = "results/benchmarks"


def experiment_of(wildcards):
    return SWEEP.experiment(wildcards.dataset, wildcards.arch)


def run_of(wildcards):
    return Run(wildcards.dataset, wildcards.arch, int(wildcards.width), int(wildcards.frozen),
               int(wildcards.seed))
