"""Snakemake entry point of rule `cka_layers` (see convergent.jobs.cka_layers_job)."""

from convergent.jobs import cka_layers_job
from convergent.logs import finish_job, setup_job_logging
from convergent.settings import LayersSettings

sm = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
setup_job_logging(sm.log[0])
cka_layers_job(store_a=sm.input.a, store_b=sm.input.b, layers=sm.params.layers,
               coordinates=sm.params.coordinates, params=LayersSettings.from_mapping(sm.params.cka_layers),
               layer_index=sm.params.layer_index, out_csv=sm.output[0])
finish_job()   # outputs are complete: exit without the interpreter's teardown
