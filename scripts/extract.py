"""Snakemake entry point of rule `extract` (see convergent.jobs.extract_job)."""

from convergent.jobs import extract_job
from convergent.logs import finish_job, setup_job_logging
from convergent.sweep import Run

sm = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
setup_job_logging(sm.log[0])
extract_job(
    run=Run.from_wildcards(sm.wildcards),
    checkpoints={"trained": sm.input.trained, "init": sm.input.init},
    settings=sm.params.settings,
    data_dir=sm.params.data_dir,
    device=sm.params.device,
    threads=sm.threads,
    out_stores={"trained": sm.output.trained, "init": sm.output.init},
)
finish_job()   # outputs are complete: exit without the interpreter's teardown
