"""Snakemake entry point of the table rules: concatenate tidy per-job CSVs into one."""

from convergent.io import write_csv
from convergent.jobs import concat_tables
from convergent.logs import setup_job_logging

sm = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
setup_job_logging(sm.log[0])
write_csv(sm.output[0], concat_tables(list(sm.input)))
