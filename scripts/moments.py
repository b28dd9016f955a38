"""Snakemake entry point of rule `moments` (see convergent.jobs.moments_job)."""

from convergent.jobs import moments_job
from convergent.logs import finish_job, setup_job_logging
from convergent.settings import MomentSettings

sm = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
setup_job_logging(sm.log[0])
moments_job(pairs=sm.params.pairs, layers=sm.params.layers, params=MomentSettings.from_mapping(sm.params.moments),
            out_dir=sm.output[0], threads=sm.threads)
finish_job()   # outputs are complete: exit without the interpreter's teardown
