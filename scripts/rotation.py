"""Snakemake entry point of rule `rotation` (see convergent.jobs.rotation_job)."""

from convergent.jobs import rotation_job
from convergent.logs import finish_job, setup_job_logging
from convergent.settings import RotationSettings
from convergent.sweep import Run

sm = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
setup_job_logging(sm.log[0])
rotation_job(
    run=Run.from_wildcards(sm.wildcards),   # a reference run: no frozen wildcard, frozen_k 0
    settings=sm.params.settings,
    checkpoint=sm.input.model,
    params=RotationSettings.from_mapping(sm.params.rotation),
    data_dir=sm.params.data_dir,
    device=sm.params.device,
    threads=sm.threads,
    out_csv=sm.output[0],
)
finish_job()   # outputs are complete: exit without the interpreter's teardown
