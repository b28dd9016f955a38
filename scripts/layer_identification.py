"""Snakemake entry point of rule `layer_identification` (see convergent.findings.layers.identification_table)."""

from convergent.findings.layers import identification_table
from convergent.io import read_table, write_table
from convergent.logs import finish_job, lap, setup_job_logging

sm = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
setup_job_logging(sm.log[0])
table = identification_table(read_table(sm.input[0]))
lap("compute")
write_table(sm.output[0], table)
lap("write")
finish_job()   # outputs are complete: exit without the interpreter's teardown
