"""Snakemake entry point of rule `figures`."""

import pandas as pd

from convergent.figures import sweep_figures
from convergent.logs import setup_job_logging

sm = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
setup_job_logging(sm.log[0])
sweep_figures(pd.read_csv(sm.input.measures), pd.read_csv(sm.input.runs), list(sm.output.figures))
