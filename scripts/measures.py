"""Snakemake entry point of rule `measures` (see convergent.jobs.measures_job)."""

from convergent.jobs import measures_job
from convergent.logs import finish_job, setup_job_logging
from convergent.settings import MeasureSettings

sm = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
setup_job_logging(sm.log[0])
measures_job(moments_dir=sm.input[0], pairs=sm.params.pairs, layers=sm.params.layers, params=MeasureSettings.from_mapping(sm.params.measures),
             layer_index=sm.params.layer_index, out_csv=sm.output[0])
finish_job()   # outputs are complete: exit without the interpreter's teardown
