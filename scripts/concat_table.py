"""Snakemake entry point of the table rules: concatenate tidy per-job CSVs into one."""

from convergent.io import write_table
from convergent.jobs import concat_tables
from convergent.logs import finish_job, lap, setup_job_logging

sm = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
setup_job_logging(sm.log[0])
table = concat_tables(list(sm.input))
lap("compute")
write_table(sm.output[0], table)
lap("write")
finish_job()   # outputs are complete: exit without the interpreter's teardown
