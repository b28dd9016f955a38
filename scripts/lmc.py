"""Snakemake entry point of rule `lmc` (see convergent.jobs.lmc_job)."""

from convergent.jobs import lmc_job
from convergent.logs import finish_job, setup_job_logging
from convergent.settings import LMCSettings

sm = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
setup_job_logging(sm.log[0])
lmc_job(
    pairs=sm.params.pairs,
    settings=sm.params.settings,
    params=LMCSettings.from_mapping(sm.params.lmc),
    data_dir=sm.params.data_dir,
    device=sm.params.device,
    threads=sm.threads,
    out_curve=sm.output.curve,
    out_barriers=sm.output.barriers,
)
finish_job()   # outputs are complete: exit without the interpreter's teardown
