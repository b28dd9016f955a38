"""Snakemake entry point of rule `train` (see convergent.jobs.train_job)."""

from convergent.jobs import train_job
from convergent.logs import finish_job, setup_job_logging
from convergent.sweep import Run

sm = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
setup_job_logging(sm.log[0])
train_job(
    run=Run.from_wildcards(sm.wildcards),
    settings=sm.params.settings,
    reference=sm.input.reference or None,
    data_dir=sm.params.data_dir,
    download=sm.params.download,
    device=sm.params.device,
    threads=sm.threads,
    out_model=sm.output.model,
    out_init=sm.output.init,
    out_log_csv=sm.output.log_csv,
    out_metrics=sm.output.metrics,
)
finish_job()   # outputs are complete: exit without the interpreter's teardown
