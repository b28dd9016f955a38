"""Snakemake entry point of rule `figures`: every figure of one experiment (dataset, arch)."""

from convergent.figures.experiment import experiment_figures, read_tables
from convergent.figures.kinds import FIGURE_NAMES
from convergent.logs import finish_job, lap, setup_job_logging

sm = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
setup_job_logging(sm.log[0])
optional = {key: sm.input.get(key) for key in ("runs", "lmc", "rotation", "cka_layers")}
tables = read_tables(measures=sm.input.measures, lmc_curves=list(sm.input.get("lmc_curves", [])), **optional)
lap("data")
experiment_figures(tables, sm.wildcards.dataset, sm.wildcards.arch, {kind: sm.output[kind] for kind in FIGURE_NAMES})
lap("compute")   # drawing and saving the figures: one call
finish_job()   # outputs are complete: exit without the interpreter's teardown
