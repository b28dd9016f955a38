"""Snakemake entry point of rule `lmc` (see convergent.jobs.lmc_job)."""

from convergent.jobs import lmc_job
from convergent.logs import setup_job_logging

sm = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
setup_job_logging(sm.log[0])
w = sm.wildcards
lmc_job(
    pair={"dataset": w.dataset, "arch": w.arch, "width": int(w.width), "frozen_k": int(w.frozen),
          "seed_a": int(w.seed_a), "seed_b": int(w.seed_b)},
    settings=sm.params.settings,
    checkpoint_a=sm.input.a,
    checkpoint_b=sm.input.b,
    params=sm.params.lmc,
    data_dir=sm.params.data_dir,
    device=sm.params.device,
    threads=sm.threads,
    out_curve=sm.output.curve,
    out_barriers=sm.output.barriers,
)
