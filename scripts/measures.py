"""Snakemake entry point of rule `measures` (see convergent.jobs.measures_job)."""

from convergent.jobs import measures_job
from convergent.logs import setup_job_logging

sm = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
setup_job_logging(sm.log[0])
measures_job(moments_path=sm.input[0], params=sm.params.measures, coordinates=sm.params.coordinates,
             out_csv=sm.output[0])
