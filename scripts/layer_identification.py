"""Snakemake entry point of rule `layer_identification` (see convergent.figures.grounding.identification_table)."""

import pandas as pd

from convergent.figures.grounding import identification_table
from convergent.io import write_csv
from convergent.logs import finish_job, setup_job_logging

sm = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
setup_job_logging(sm.log[0])
write_csv(sm.output[0], identification_table(pd.read_csv(sm.input[0])))
finish_job()   # outputs are complete: exit without the interpreter's teardown
