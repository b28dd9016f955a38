"""Snakemake entry point of rule `layer_identification` (see convergent.figures.grounding.identification_table)."""

import pandas as pd

from convergent.figures.grounding import identification_table
from convergent.io import write_csv
from convergent.logs import finish_job, lap, setup_job_logging

sm = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
setup_job_logging(sm.log[0])
table = identification_table(pd.read_csv(sm.input[0]))
lap("compute")
write_csv(sm.output[0], table)
lap("write")
finish_job()   # outputs are complete: exit without the interpreter's teardown
