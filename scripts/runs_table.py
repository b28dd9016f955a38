"""Snakemake entry point of rule `runs_table`: one row per trained network."""

from convergent.io import write_table
from convergent.jobs import runs_table
from convergent.logs import finish_job, lap, setup_job_logging

sm = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
setup_job_logging(sm.log[0])
table = runs_table(list(sm.input), chance_margin=sm.params.chance_margin)
lap("compute")
write_table(sm.output[0], table)
lap("write")
finish_job()   # outputs are complete: exit without the interpreter's teardown
