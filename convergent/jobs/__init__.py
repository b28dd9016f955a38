"""One function per pipeline stage, taking paths, :class:`~convergent.sweep.Run` objects and
settings objects (:mod:`convergent.settings`).

The workflow's ``scripts/`` call these and nothing else, so each stage can be run
and tested without Snakemake. A settings argument may also be a mapping (a test's, or a
caller's outside the pipeline): the section's ``coerce`` reads it, keys left out taking the
section's defaults. Every output is written atomically.

One module per rule file: :mod:`~convergent.jobs.train` (rules/train.smk),
:mod:`~convergent.jobs.extract` (rules/extract.smk), :mod:`~convergent.jobs.compare` (moments
and measures, rules/compare.smk), :mod:`~convergent.jobs.layers` (rules/layers.smk),
:mod:`~convergent.jobs.weights` (lmc and rotation, rules/weights.smk) and
:mod:`~convergent.jobs.aggregate` (the tables); what several share is in ``_common``. Every job
is importable from here as before; importing them imports no heavy library (each job imports
what it needs when it runs).
"""

from convergent.jobs._common import lr_hint
from convergent.jobs.aggregate import CHANCE_MARGIN, at_chance, complete_pair_columns, concat_tables, runs_table
from convergent.jobs.compare import measures_job, moments_job
from convergent.jobs.extract import extract_job
from convergent.jobs.layers import cka_layers_job, cross_layer_cka
from convergent.jobs.train import train_job
from convergent.jobs.weights import evaluate_test, failed_control_rows, lmc_job, rotation_job

__all__ = ["CHANCE_MARGIN", "at_chance", "cka_layers_job", "complete_pair_columns", "concat_tables",
           "cross_layer_cka", "evaluate_test", "extract_job", "failed_control_rows", "lmc_job", "lr_hint",
           "measures_job", "moments_job", "rotation_job", "runs_table", "train_job"]
